def nobody(user):
    return None
