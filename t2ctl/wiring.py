"""The one place that picks implementations from settings and connects the rooms: the
provisioner, the handlers a worker can run, the periodic tasks, and the observers (metrics,
redaction) handed to the engine and the Zoho client, which know neither. The daemon and the
CLI both build from here, once ``startup.connect`` has started the process."""

from datetime import datetime, timedelta

from pydantic import SecretStr

from t2ctl import clock
from t2ctl.config import Settings
from t2ctl.db.models import DELIVERY_STATUSES
from t2ctl.errors import ConfigError
from t2ctl.finance import reconciliation
from t2ctl.jobs import admin, queue, signals, tasks
from t2ctl.jobs.scheduler import Periodic, Scheduler
from t2ctl.jobs.worker import Worker, worker_name
from t2ctl.monitoring import metrics, status
from t2ctl.orders import cancellation, expiry, processing
from t2ctl.provisioning import Ledger, Provisioner
from t2ctl.provisioning.sandbox import SandboxLedger, SandboxProvisioner
from t2ctl.provisioning.zoho.client import Client
from t2ctl.provisioning.zoho.ledger import ZohoLedger
from t2ctl.provisioning.zoho.oauth import Credentials, TokenCache
from t2ctl.provisioning.zoho.pace import Pacer
from t2ctl.provisioning.zoho.provisioner import ZohoProvisioner
from t2ctl.security import redaction
from t2ctl.security.crypto import SecretBox, box_for
from t2ctl.webhooks import deliveries, delivery


def zoho_client(settings: Settings, box: SecretBox) -> Client:
    """The Zoho Inventory client of these settings: ``zoho.requests_per_minute`` calls per
    ``zoho.rate_period`` (a minute unless a test compresses time), shared by the fleet."""
    zoho = settings.zoho
    tokens = TokenCache(
        Credentials(
            accounts_url=zoho.accounts_url,
            client_id=_required(zoho.client_id, "client_id"),
            client_secret=_secret(zoho.client_secret, "client_secret"),
            refresh_token=_secret(zoho.refresh_token, "refresh_token"),
        ),
        box=box,
        timeout=zoho.timeout_seconds,
        observer=metrics.zoho_call,
        redact=redaction.redact,
    )
    pacer = Pacer(
        f"zoho:{zoho.organization_id}", calls=zoho.requests_per_minute, per=zoho.rate_period
    )
    return Client(
        api_url=zoho.api_url,
        organization_id=_required(zoho.organization_id, "organization_id"),
        tokens=tokens,
        pacer=pacer,
        timeout=zoho.timeout_seconds,
        observer=metrics.zoho_call,
    )


def zoho_provisioner(settings: Settings, client: Client) -> ZohoProvisioner:
    # The client secret keys the contact cache's email digests: it never enters the database.
    return ZohoProvisioner(
        client, digest_key=_secret(settings.zoho.client_secret, "client_secret").encode()
    )


def _required(value: str | None, key: str) -> str:
    """A Zoho setting the settings require whenever Zoho is enabled, the only time a Zoho
    client is built; its absence here is a configuration error, said as one."""
    if value is None:
        raise ConfigError([f"zoho.{key} is required to reach Zoho Inventory"])
    return value


def _secret(value: SecretStr | None, key: str) -> str:
    return _required(None if value is None else value.get_secret_value(), key)


def settings_provisioner(settings: Settings, box: SecretBox) -> Provisioner:
    if settings.sandbox_mode:
        return SandboxProvisioner(
            delay=settings.sandbox.provision_delay,
            decline=frozenset(settings.sandbox.decline_products),
        )
    return zoho_provisioner(settings, zoho_client(settings, box))


def ledger(settings: Settings, box: SecretBox) -> Ledger:
    """Where the sales orders are read back from: the sandbox's table, or Zoho through a
    client of its own (its calls counted apart) within the fleet's budget."""
    if settings.sandbox_mode:
        return SandboxLedger()
    return ZohoLedger(zoho_client(settings, box), currency=settings.zoho.currency)


def reconcile(
    settings: Settings,
    box: SecretBox,
    *,
    since: datetime,
    until: datetime,
    source: str,
    routine: bool,
) -> reconciliation.Result:
    """Reconcile the orders created in ``[since, until)`` with the settings' ledger, and
    record the run (``source``: cli or schedule; ``routine``: the default window, which
    feeds the drift gauge)."""
    started = clock.now()
    result = reconciliation.reconcile(ledger(settings, box), since=since, until=until)
    reconciliation.record(result, source=source, routine=routine, started_at=started)
    return result


def scheduler(settings: Settings) -> Scheduler:
    """The periodic tasks of CONTRACT §3, at their configured times in schedule.timezone,
    and ``reconcile`` when ``schedule.reconcile_at`` is set."""
    plan = settings.schedule
    retention = settings.worker.job_retention
    attempts_kept = timedelta(days=settings.webhooks.retention_days)

    def prune(as_of):
        jobs = admin.prune(before=as_of - retention)
        tries = deliveries.prune_attempts(before=as_of - attempts_kept)
        return (
            f"{jobs} finished job(s) older than {clock.rfc3339(as_of - retention)} and "
            f"{tries} webhook attempt(s) older than {clock.rfc3339(as_of - attempts_kept)} pruned"
        )

    periodic = [
        Periodic(
            "expiry-reminders",
            lambda as_of: expiry.reminders(as_of, days=plan.reminder_days),
            "day",
            plan.expiry_reminders_at,
        ),
        Periodic("expiry-check", expiry.check, "day", plan.expiry_check_at),
        Periodic("prune", prune, "hour", ":30"),
    ]

    def reconcile_daily(as_of: datetime) -> str:
        since = as_of - reconciliation.WINDOW
        result = reconcile(
            settings, box_for(settings), since=since, until=as_of, source="schedule", routine=True
        )
        reconciliation.warn(result)  # the journal's only reader is whoever looks for trouble
        return result.summary()

    if plan.reconcile_at is not None:
        periodic.append(Periodic("reconcile", reconcile_daily, "day", plan.reconcile_at))
    return Scheduler(periodic, timezone=plan.timezone)


def registry(
    settings: Settings,
    *,
    box: SecretBox,
    schedule: Scheduler,
    provisioner: Provisioner | None = None,
) -> tasks.Registry:
    """Every handler a worker of this daemon runs; ``provisioner`` defaults to the settings'."""
    built = tasks.Registry()
    provisioner = provisioner or settings_provisioner(settings, box)
    processing.register(built, provisioner=provisioner, box=box, retry_for=settings.zoho.retry_for)
    cancellation.register(built, provisioner=provisioner)
    delivery.register(built, settings, box=box)
    schedule.register(built)
    return built


def worker(settings: Settings, registry: tasks.Registry, *, name: str | None = None) -> Worker:
    """The daemon's worker: its runs timed in the metrics, its errors masked before they are
    stored."""
    hooks = signals.Signals()
    hooks.connect(_time_job)
    return Worker(
        registry,
        name=name or worker_name(),
        lease=timedelta(seconds=settings.worker.lease_seconds),
        hooks=hooks,
        redact=redaction.redact,
    )


def _time_job(signal: str, job: queue.Claimed, seconds: float | None) -> None:
    if seconds is not None:  # a run's end, not its claim
        metrics.JOBS.labels(job.task, signal).observe(seconds)


def gauges() -> metrics.Gauges:
    """The fleet's queue as the metrics report it at each scrape."""
    found = status.depth(statuses=DELIVERY_STATUSES)
    age = found.oldest_due_age
    last = reconciliation.last_routine()
    return metrics.Gauges(
        found.jobs.by_task,
        age.total_seconds() if age else 0.0,
        found.deliveries,
        None if last is None else metrics.Reconciled(last[0].timestamp(), last[1]),
    )
