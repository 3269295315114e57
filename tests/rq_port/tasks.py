"""Background tasks of a small web app: an export with progress in job.meta (the Flask Mega-Tutorial's
pattern), a flaky e-mail sender retried with intervals, an image resizer, and callbacks."""

from clusterq import get_current_job


def export_posts(user_id, count):
    job = get_current_job()
    posts = []
    for i in range(count):
        posts.append({"user": user_id, "post": i})
        job.meta["progress"] = 100.0 * (i + 1) / count
        job.save_meta()
    return {"user": user_id, "posts": len(posts)}


def send_email(address, attempts_file):
    """Fails the first two times (a busy SMTP server), then succeeds."""
    with open(attempts_file, "a") as f:
        f.write("x")
    with open(attempts_file) as f:
        tries = len(f.read())
    if tries < 3:
        raise ConnectionError(f"SMTP server busy (try {tries})")
    return f"sent to {address} after {tries} tries"


def resize_image(name):
    if name.endswith(".bmp"):
        raise ValueError(f"unsupported format: {name}")
    return name.replace(".", "-small.")


def ping():
    return "pong"


def report_success(job, connection, result, *args, **kwargs):
    job.meta["notified"] = result["posts"]
    job.save_meta()


def report_failure(job, connection, type, value, traceback):
    job.meta["failure"] = str(value)
    job.save_meta()
