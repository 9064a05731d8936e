"""Operator commands: `flask --app web.wsgi pool status` and `flask --app web.wsgi pool sync`."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from shared.jobs import TaskName
from shared.vonage_gateway import GatewayPorts, VonageFailure
from web.services import publisher, services

pool = AppGroup("pool", help="Inspect and maintain the pool of virtual numbers.")


def register_cli(app: Flask) -> None:
    app.cli.add_command(pool)


@pool.command("status")
def pool_status() -> None:
    """Each number with its country, state, live routes and monthly cost."""
    svc = services()
    numbers = svc.inventory.numbers()
    click.echo(f"{'number':<16} {'country':<7} {'state':<9} {'routes':>6} {'cost':>6}")
    for n in numbers:
        click.echo(f"+{n.msisdn:<15} {n.country:<7} {n.state:<9} {n.routes:>6} "
                   f"{n.monthly_cost or '-':>6}")
    for country in svc.inventory.countries():
        target = svc.settings.pool_targets.get(country, 0)
        click.echo(f"{country}: {svc.inventory.size(country)} allocatable, target {target}")


@pool.command("sync")
def pool_sync() -> None:
    """Run pool maintenance now, in this process (beat runs it every minute)."""
    svc = services()
    try:
        report = svc.pool_keeper.maintain(GatewayPorts(svc.settings))
    except VonageFailure as failure:
        raise click.ClickException(
            f"maintenance stopped: {failure.code} {failure.reason}"
        ) from failure
    if not report.ran:
        raise click.ClickException("another maintenance run holds the lock; try again shortly")
    for label in ("adopted", "lost", "repaired", "bought", "drained", "cancelled"):
        click.echo(f"{label}: {len(getattr(report, label))}")
    if report.shortfall:
        click.echo(f"short: {report.shortfall}")
    for outbound_id in report.sends:
        publisher().publish(TaskName.SEND_SMS, outbound_id)
    if report.sends:
        click.echo(f"number-change SMS queued: {len(report.sends)}")
