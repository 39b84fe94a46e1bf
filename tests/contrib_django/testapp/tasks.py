"""Tasks of the test app: teguh handlers and django.tasks functions (autodiscovered)."""

from typing import Any

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from teguh.contrib.django import app

from .models import Note


@app.task("process-note")
def process_note(params: Any, ctx: Any) -> Any:
    text = ctx.step("read", lambda: Note.objects.get(pk=params["note_id"]).text)
    Note.objects.filter(pk=params["note_id"]).update(processed_by_task=ctx.task_id)
    return {"upper": text.upper()}


@app.task("process-note-async")
async def process_note_async(params: Any, ctx: Any) -> Any:
    # the async ORM: DjangoApp runs the handler so these calls use the handler thread's connection
    note = await Note.objects.aget(pk=params["note_id"])
    text = ctx.step("read", lambda: note.text)
    await Note.objects.filter(pk=params["note_id"]).aupdate(processed_by_task=ctx.task_id)
    return {"upper": text.upper()}


@app.task("echo", queue="other")
def echo(params: Any) -> Any:
    return params


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
def durable_double(context: Any, x: int) -> dict:
    doubled = context.teguh.step("double", lambda: x * 2)
    return {"doubled": doubled, "attempt": context.attempt}


@task()
def explode(message: str) -> None:
    raise KeyError(message)


@task()
async def async_add(a: int, b: int) -> int:
    return a + b
