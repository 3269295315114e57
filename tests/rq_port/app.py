"""The web app's task layer: what its views call to start background work and report on it."""

import os

from clusterq import Callback, Job, Queue, Retry, connect
from clusterq.exceptions import NoSuchJobError
from clusterq.registry import FailedJobRegistry
from rq_port import tasks

REDIS_URL = os.environ.get("REDIS_URL", "redis://")
redis_conn = connect(REDIS_URL)

task_queue = Queue("myapp-tasks", connection=redis_conn)
email_queue = Queue("myapp-emails", connection=redis_conn)
inline_queue = Queue("myapp-inline", connection=redis_conn, is_async=False)


def launch_export(user_id, count):
    job = task_queue.enqueue(tasks.export_posts, user_id, count, job_timeout=60,
                             on_success=Callback(tasks.report_success))
    return job.get_id()  # stored in the app's 36-character task column


def export_status(job_id):
    job = Job.fetch(job_id, connection=redis_conn)
    return {"status": job.get_status(), "progress": job.meta.get("progress", 0),
            "result": job.return_value(), "notified": job.meta.get("notified")}


def send_welcome(address, attempts_file):
    job = email_queue.enqueue(tasks.send_email, address, attempts_file, retry=Retry(max=3, interval=[1, 1]))
    return job.id


def email_status(job_id):
    job = Job.fetch(job_id, connection=redis_conn)
    return job.get_status(), job.return_value(), job.retries_left


def record_visit():
    return email_queue.enqueue(tasks.ping, result_ttl=0).id  # fire and forget


def visit_recorded(job_id):
    try:
        Job.fetch(job_id, connection=redis_conn)
    except NoSuchJobError:
        return True  # result_ttl=0: the job is gone once it ran
    return False


def thumbnail_now(name):
    return inline_queue.enqueue(tasks.resize_image, name).return_value()


def resize_later(name):
    return task_queue.enqueue(tasks.resize_image, name, on_failure=Callback(tasks.report_failure)).id


def failure_of(job_id):
    return Job.fetch(job_id, connection=redis_conn).meta.get("failure")


def failed_tasks():
    return FailedJobRegistry(queue=task_queue).get_job_ids()


def retry_failed_tasks():
    registry = FailedJobRegistry(queue=task_queue)
    for job_id in registry.get_job_ids():
        registry.requeue(job_id)


# The worker script passes Worker(exception_handlers=EXCEPTION_HANDLERS).
def record_crash(job, exc_type, exc_value, traceback):
    job.meta["crash"] = f"{exc_type.__name__}: {exc_value}"
    job.save_meta()
    return True  # fall through to the next handler


def keep_quiet_about_bad_input(job, exc_type, exc_value, traceback):
    return not issubclass(exc_type, ValueError)  # False for bad input: handled, stop the chain here


def never_reached_for_bad_input(job, exc_type, exc_value, traceback):
    job.meta["escalated"] = True
    job.save_meta()


EXCEPTION_HANDLERS = [record_crash, keep_quiet_about_bad_input, never_reached_for_bad_input]


def crash_of(job_id):
    job = Job.fetch(job_id, connection=redis_conn)
    return job.meta.get("crash"), job.meta.get("escalated")
