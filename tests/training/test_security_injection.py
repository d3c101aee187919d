"""bench.injection: the judge prompt-injection suite's flip rate per judge, in one command."""
from bench.injection import print_table, run


def test_the_injection_bench_reports_a_flip_rate_per_judge(capsys):
    report = run(reward_model_steps=0)  # the reward model is trained only by the bench command itself
    judges = report["judges"]
    assert report["cases"] == 48 and len(report["techniques"]) == 8
    length = next(r for name, r in judges.items() if name.startswith("length"))
    # appending any injection makes a bad greeting longer: the length rule flips on every eligible case
    assert length["eligible"] > 0 and length["flip_rate"] == 1.0
    tfidf = judges["tfidf-starter"]
    assert tfidf["eligible"] > 0 and 0.0 <= tfidf["flip_rate"] <= 1.0
    assert set(tfidf["by_technique"]) <= set(report["techniques"])
    print_table(report)
    out = capsys.readouterr().out
    assert "tfidf-starter" in out and "flip rate" in out
