from django.db import models


class Order(models.Model):
    item = models.TextField()
    status = models.TextField(default="placed")  # placed -> reserved -> shipped
    task_id = models.TextField(blank=True, default="")
