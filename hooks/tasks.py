"""Celery tasks of the webhooks: ids in, one service call."""

from celery import shared_task

from hooks import services


@shared_task(name="hooks.deliver", ignore_result=True)
def deliver_task(delivery_id: int) -> str:
    return services.deliver(delivery_id)


@shared_task(name="hooks.sweep", ignore_result=True)
def sweep_task() -> int:
    return len(services.sweep())
