from django.db import models


class Note(models.Model):
    text = models.TextField()
    processed_by_task = models.TextField(blank=True, default="")
