"""GRPO's principled reward and evaluation behind slot prompts: the judge reads the request the
prompt was made from, and the reward blends in the request-fit mark."""
import pytest

from generation.conditioning import model_query
from training.rl.request_judge import RequestJudge, prompts_for

# Written for these tests.
REQUEST = "给妈妈的中秋祝福，简短一点"
FITS = "妈，中秋快乐！月亮圆了，我也快回家了。"
WRONG = "新年快乐！祝你来年红包拿到手软，万事顺意。"


def test_prompts_map_back_to_the_first_request_of_each_prompt():
    mapping = prompts_for([REQUEST, "  ", REQUEST + " "], "slots")
    assert mapping == {model_query(REQUEST, "slots"): REQUEST}
    assert prompts_for([REQUEST], "query") == {REQUEST: REQUEST}


def test_the_judge_reads_the_request_not_the_prompt(team_principled_judge):
    prompt = model_query(REQUEST, "slots")
    judge = RequestJudge(team_principled_judge, {prompt: REQUEST})
    assert judge.scores([prompt, prompt], [FITS, WRONG]) == team_principled_judge.scores([REQUEST] * 2, [FITS, WRONG])
    assert judge.version == team_principled_judge.version
    assert judge.requests_of(["未知提示"]) == ["未知提示"]  # an unmapped prompt is read as it is


def test_the_reward_blends_the_request_fit_mark(team_principled_judge):
    prompt = model_query(REQUEST, "slots")
    reward = RequestJudge(team_principled_judge, {prompt: REQUEST}, fit_weight=0.3)
    verdicts = team_principled_judge.evaluate_many([REQUEST] * 2, [FITS, WRONG])
    expected = [0.7 * v.score + 0.3 * v.rubric["request_fit"] for v in verdicts]
    assert reward.scores([prompt] * 2, [FITS, WRONG]) == pytest.approx(expected)
    assert expected[0] > expected[1]  # the wrong occasion costs its request-fit mark
    with pytest.raises(ValueError, match="fit_weight"):
        RequestJudge(team_principled_judge, {}, fit_weight=1.5)
