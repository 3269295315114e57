"""The jobs of the example: plain functions, run by `clusterq worker` started in this folder."""


def send_welcome(address: str) -> str:
    return f"welcome mail sent to {address}"


async def resize(image: str, width: int) -> dict:
    return {"image": image, "width": width}
