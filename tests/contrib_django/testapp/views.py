from django.db import transaction
from django.http import HttpRequest, JsonResponse

from .models import Note
from .tasks import process_note


def create_note(request: HttpRequest) -> JsonResponse:
    """Write a note and spawn its task in one transaction; `?fail=1` raises after both."""
    with transaction.atomic():
        note = Note.objects.create(text=request.POST["text"])
        spawned = process_note.spawn({"note_id": note.pk})
        if request.GET.get("fail"):
            raise RuntimeError("the view failed after writing and spawning")
    return JsonResponse({"note_id": note.pk, "task_id": spawned.task_id})
