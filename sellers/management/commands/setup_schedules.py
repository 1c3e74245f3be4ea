from django.core.management.base import BaseCommand

from sellers.schedules import SCHEDULES, schedules_ensure


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules spconnect needs (also done after every migrate). Safe to run twice."

    def handle(self, *args, **options):
        created = schedules_ensure()
        for spec in SCHEDULES:
            mark = "created" if spec.name in created else "up to date"
            self.stdout.write(f"{spec.name}: every {spec.minutes} min → {spec.func} ({mark})")
        if not SCHEDULES:
            self.stdout.write("No schedules are defined.")
