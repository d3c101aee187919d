"""Which judge trained each checkpoint, and how well that judge agrees with people.

A GRPO checkpoint records its judge's name in `data["judge"]`; its agreement with people is the
annotation app's figure for that judge version over every rated greeting it judged."""
from webapp.annotation import alignment
from webapp.judges.models import JudgeVersion


def training_judges(checkpoints) -> dict[str, dict]:
    """{checkpoint name: {"judge": JudgeVersion, "agreement": Estimate, "compared": n}} for the
    checkpoints a judge trained; one alignment per judge, however many checkpoints it trained."""
    names = {c.name: c.data.get("judge") for c in checkpoints if isinstance(c.data, dict) and c.data.get("judge")}
    if not names:
        return {}
    judges = {j.name: j for j in JudgeVersion.objects.filter(name__in=set(names.values()))}
    items = alignment.pointwise_items(None)
    figures = {name: alignment.judge_alignment(judge, items, full=False) for name, judge in judges.items()}
    return {checkpoint: figures[judge] for checkpoint, judge in names.items() if judge in figures}
