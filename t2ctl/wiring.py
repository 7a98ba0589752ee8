"""The one place that picks implementations from settings: the provisioner, the handlers a
worker can run, and the periodic tasks. The daemon and the CLI both build from here."""

from t2ctl import clock
from t2ctl.config import Settings
from t2ctl.errors import T2Error
from t2ctl.jobs import queue, tasks
from t2ctl.jobs.scheduler import Periodic, Scheduler
from t2ctl.orders import expiry, processing
from t2ctl.provisioning import Provisioner
from t2ctl.provisioning.sandbox import SandboxProvisioner
from t2ctl.security.crypto import SecretBox


def provisioner(settings: Settings) -> Provisioner:
    if settings.sandbox_mode:
        return SandboxProvisioner(
            delay=settings.sandbox.provision_delay,
            decline=frozenset(settings.sandbox.decline_products),
        )
    raise T2Error(
        "Zoho provisioning is not part of this version yet; set zoho.enabled = false "
        "to run in sandbox mode"
    )


def scheduler(settings: Settings) -> Scheduler:
    """The periodic tasks of CONTRACT §3, at their configured times in schedule.timezone."""
    plan = settings.schedule
    retention = settings.worker.job_retention

    def prune(as_of):
        pruned = queue.prune(before=as_of - retention)
        return f"{pruned} finished job(s) older than {clock.rfc3339(as_of - retention)} pruned"

    return Scheduler(
        [
            Periodic(
                "expiry-reminders",
                lambda as_of: expiry.reminders(as_of, days=plan.reminder_days),
                "day",
                plan.expiry_reminders_at,
            ),
            Periodic("expiry-check", expiry.check, "day", plan.expiry_check_at),
            Periodic("prune", prune, "hour", ":30"),
        ],
        timezone=plan.timezone,
    )


def registry(settings: Settings, *, box: SecretBox, schedule: Scheduler) -> tasks.Registry:
    """Every handler a worker of this daemon runs."""
    built = tasks.Registry()
    processing.register(
        built, provisioner=provisioner(settings), box=box, retry_for=settings.zoho.retry_for
    )
    schedule.register(built)
    return built
