from django.db import migrations


def create_default(apps, schema_editor):
    from webapp.judges.principles import DEFAULT_RULES, DEFAULT_STRENGTHS, DEFAULT_WEAKNESSES

    PrincipleSet = apps.get_model("judges", "PrincipleSet")
    PrincipleSet.objects.get_or_create(
        name="default", version=1,
        defaults={"strengths": DEFAULT_STRENGTHS, "weaknesses": DEFAULT_WEAKNESSES, "rules": DEFAULT_RULES,
                  "note": "The paper's criteria as its repository lists them."},
    )


def remove_default(apps, schema_editor):
    apps.get_model("judges", "PrincipleSet").objects.filter(name="default", version=1).delete()


class Migration(migrations.Migration):
    dependencies = [("judges", "0001_initial")]
    operations = [migrations.RunPython(create_default, remove_default)]
