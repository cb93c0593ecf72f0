"""Reasoning transfer (MATH-500, GPQA-Diamond) on the small sample the project writes itself
(``act_pipeline/evaluation/transfer_samples.py``, answers known): the loader and its errors, the
answer extraction and scoring with known answers, the seeded GPQA permutation, the metric over
runs with scripted policies, one run of the real SmolLM2-135M, the Dagster asset and the report."""

import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from act_pipeline.config import REPO_ROOT, ConfigError, TransferConfig, load_config
from act_pipeline.evaluation import transfer as tr
from act_pipeline.evaluation.transfer_samples import EQUIVALENT, GPQA_SAMPLES, MATH_SAMPLES, WRONG, write_samples
from act_pipeline.sampling.base import Completion

from .conftest import SMOKE, asset
from .scripted import TOK, Scripted

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample sets as JSONL, loaded: (paths, MATH problems, GPQA questions)."""
    paths = write_samples(tmp_path_factory.mktemp("sets"))
    return paths, tr.load_math500(str(paths["math500"])), tr.load_gpqa(str(paths["gpqa_diamond"]))


# ---- the loader ----------------------------------------------------------------------------------

def test_the_sample_loads_from_jsonl_and_parquet_alike(sample, tmp_path):
    _, problems, questions = sample
    parquet = write_samples(tmp_path, parquet=True)
    assert tr.load_math500(str(parquet["math500"])) == problems
    assert tr.load_gpqa(str(parquet["gpqa_diamond"])) == questions
    assert [p.id for p in problems] == [r["unique_id"] for r in MATH_SAMPLES]
    assert problems[0].answer == "\\frac{1}{2}" and problems[0].level == 1 and problems[0].subject == "Prealgebra"
    # GPQA's options lose the whitespace around them (the public set has trailing newlines)
    assert questions[1].correct == "The newton" and questions[1].incorrect[1] == "The watt"
    assert len(tr.load_math500(str(parquet["math500"]), limit=2)) == 2


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


GOOD_MATH = {"problem": "1+1?", "answer": "2"}
GOOD_GPQA = dict(GPQA_SAMPLES[0])


@pytest.mark.parametrize("loader,rows,where,msg", [
    ("math", [GOOD_MATH, {"problem": "2+2?"}], ":2: field `answer`", "missing"),
    ("math", [GOOD_MATH, GOOD_MATH, {"problem": "", "answer": "1"}], ":3: field `problem`", "non-empty string"),
    ("math", [{"problem": "x", "answer": 4}], ":1: field `answer`", "non-empty string, got 4"),
    ("math", [{**GOOD_MATH, "level": "2"}], ":1: field `level`", "must be an integer"),
    ("math", [{**GOOD_MATH, "unique_id": "a"}, {**GOOD_MATH, "unique_id": "a"}], ":2: field `unique_id`",
     "duplicate id 'a' (first on line 1)"),
    ("math", [GOOD_MATH, "{not json"], ":2", "not valid JSON"),
    ("math", ["[1, 2]"], ":1", "expected a JSON object, got list"),
    ("gpqa", [GOOD_GPQA, {k: v for k, v in GOOD_GPQA.items() if k != "Incorrect Answer 2"}],
     ":2: field `Incorrect Answer 2`", "missing"),
    ("gpqa", [{**GOOD_GPQA, "Correct Answer": "  "}], ":1: field `Correct Answer`", "non-empty string"),
])
def test_a_bad_row_is_one_line_naming_file_line_and_field(tmp_path, loader, rows, where, msg):
    path = _jsonl(tmp_path / "set.jsonl", rows)
    with pytest.raises(tr.TransferDataError) as e:
        (tr.load_math500 if loader == "math" else tr.load_gpqa)(path)
    text = str(e.value)
    assert text.startswith(path + where) and msg in text and "\n" not in text, text


def test_a_bad_parquet_row_names_its_row_and_field(tmp_path):
    path = tmp_path / "math.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD_MATH, {"problem": "3+3?", "answer": None}]), path)
    with pytest.raises(tr.TransferDataError, match=rf"^{path}:2: field `answer`: missing$"):
        tr.load_math500(str(path))


def test_sets_resolve_inside_the_data_root_and_a_missing_one_names_its_setting(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "m.jsonl").write_text(json.dumps(GOOD_MATH) + "\n")
    got = tr.resolve_sets(TransferConfig(math500="t/m.jsonl", gpqa_diamond=None), tmp_path, "p.yaml")
    assert got == {"math500": str(tmp_path / "t" / "m.jsonl")}
    with pytest.raises(ConfigError, match=r"^p.yaml: `transfer.gpqa_diamond` names 't/g.jsonl', but .* does not exist"):
        tr.resolve_sets(TransferConfig(math500="t/m.jsonl", gpqa_diamond="t/g.jsonl"), tmp_path, "p.yaml")
    with pytest.raises(ConfigError, match=r"`transfer.math500` must be a .jsonl or .parquet file"):
        tr.resolve_sets(TransferConfig(math500="t/m.csv"), tmp_path)
    (tmp_path / "t" / "out.jsonl").symlink_to(tmp_path.parent)
    with pytest.raises(ConfigError, match=r"`transfer.math500` 't/out.jsonl' resolves to .*, outside"):
        tr.resolve_sets(TransferConfig(math500="t/out.jsonl"), tmp_path)


def test_a_hub_set_that_cannot_be_loaded_names_its_setting(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(tr.TransferDataError, match=r"^`transfer.math500`: hf:nobody/no-such-set could not be "
                                                   r"loaded with the datasets library .*name the JSONL/Parquet file"):
        tr.load_math500("hf:nobody/no-such-set")


@pytest.mark.parametrize("yaml,msg", [
    ("transfer:\n  enabled: true\n", "P:2: `transfer.enabled` needs `transfer.math500` or `transfer.gpqa_diamond`"),
    ("transfer:\n  math500: hf:MATH-500\n", "P:2: `transfer.math500` must be a JSONL/Parquet file or hf:<owner>/<name>"),
    ("transfer:\n  runs: 0\n", "P:2: `transfer.runs` must be > 0, got 0"),
    ("transfer:\n  rounds: 3\n", "P:2: unknown key `transfer.rounds`"),
])
def test_the_transfer_section_is_checked(tmp_path, yaml, msg):
    p = tmp_path / "P"
    p.write_text(yaml)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).replace(str(p), "P").startswith(msg), str(e.value)


# ---- answers and scoring ---------------------------------------------------------------------------

@pytest.mark.parametrize("uid", list(EQUIVALENT))
def test_a_right_answer_in_any_equivalent_form_scores_and_a_wrong_one_does_not(sample, uid):
    p = next(p for p in sample[1] if p.id == uid)
    gold = tr.math_gold(p.answer)
    for form in [p.answer, *EQUIVALENT[uid]]:
        assert tr.math_correct(gold, f"Step by step... so the answer is $\\boxed{{{form}}}$.")[1], form
    assert not tr.math_correct(gold, f"So the answer is $\\boxed{{{WRONG[uid]}}}$.")[1]


@pytest.mark.parametrize("completion,thinking,right", [
    ("The answer is \\boxed{0.5}.", False, True),
    ("The answer is 0.5.", False, False),                        # no box: no answer
    ("The final answer is $\\frac{1}{2}$.", False, False),       # still no box
    (Completion("The answer is \\boxed{0.5} but", truncated=True), False, False),  # cut off: not an answer
    ("3/6 = 1/2</think>\nSo \\boxed{1/2}", True, True),          # reasoning closed, then the answer
    ("3/6 = 1/2, so \\boxed{1/2}", True, False),                 # the reasoning never closed
    ("<think>hm</think>\\boxed{0.5}<think>again", False, False),  # a second reasoning block left open
    ("\\boxed{0.5} or maybe \\boxed{3}", False, False),          # two different answers: math-verify refuses
])
def test_math_answers_are_read_strictly(completion, thinking, right):
    assert tr.math_correct(tr.math_gold("\\frac{1}{2}"), completion, thinking)[1] is right


@pytest.mark.parametrize("completion,letter", [
    ("The force is measured in newtons.\nAnswer: B", "B"),
    ("...\n**Answer:** (C)\n", "C"),
    ("Answer: D.", "D"),
    ("answer: A", "A"),
    ("Answer: b", None),            # the letter is upper case
    ("Answer: A or B", None),
    ("Answer: C\nActually I am not sure.", None),  # not the last line
    ("The answer is C", None),
    ("\\boxed{C}", None),
    (Completion("Answer: C", truncated=True), None),
])
def test_gpqa_letters_are_read_strictly(completion, letter):
    assert tr.gpqa_letter(completion) == letter


def test_the_gpqa_permutation_is_seeded_by_seed_and_question(sample):
    questions = sample[2]
    for q in questions:
        for seed in range(5):
            options, letter = tr.gpqa_options(q, seed)
            assert options == tr.gpqa_options(q, seed)[0]  # deterministic
            assert sorted(options) == sorted([q.correct, *q.incorrect])
            assert options[tr.LETTERS.index(letter)] == q.correct
    # the order depends on the seed and on the question (not one order for every question)
    assert len({tuple(tr.gpqa_options(questions[0], s)[0]) for s in range(8)}) > 1
    assert len({tr.gpqa_options(q, 0)[1] for q in questions}) > 1
    prompt, letter = tr.gpqa_prompt(TOK, questions[1], 3)
    options = tr.gpqa_options(questions[1], 3)[0]
    assert f"{letter}) The newton\n" in prompt + "\n" and f"A) {options[0]}\nB) {options[1]}" in prompt


# ---- the metrics, with scripted policies (known answers) -------------------------------------------

def test_math500_accuracy_over_runs_is_known_for_a_scripted_policy(sample):
    problems = sample[1]
    right_ids = {p.id for p in problems[:4]}
    golds = {p.problem: p for p in problems}

    def answer(prompt, k):  # right on the first 4 problems (in another form), wrong on the rest
        p = next(p for text, p in golds.items() if text in prompt)
        return f"\\boxed{{{EQUIVALENT[p.id][0] if p.id in right_ids else WRONG[p.id]}}}"

    sampler = Scripted(answer)
    m = tr.math500_accuracy(sampler, TOK, problems, seed=7, runs=3, temperature=0.0, max_new_tokens=32, log=lambda s: None)
    assert (m.name, m.split, m.n, m.seed) == ("math500_accuracy", "math500", len(problems), 7)
    assert m.value == pytest.approx(4 / 7) and m.detail["runs"] == [pytest.approx(4 / 7)] * 3 and m.detail["std"] == 0
    assert m.outcomes == [1, 1, 1, 1, 0, 0, 0] and m.items == [p.id for p in problems]
    assert len(sampler.calls) == 1 and m.detail["decoded_once"]  # greedy: the same completions every run
    assert m.detail["parsed"] == 21 and m.detail["gold_unparsable"] == []


def test_runs_at_a_temperature_give_mean_and_std_over_runs(sample):
    problems = sample[1][:2]
    sampler = Scripted(lambda p, k: "\\boxed{1/2}" if "3}{6}" in p else "\\boxed{1024}")
    seeds = []
    original = sampler.generate

    def generate(prompts, params, progress=None):  # right everywhere in run 0, nowhere after
        seeds.append(params.seed)
        outs = original(prompts, params)
        return outs if params.seed == 5 else [[Completion("no idea")] for _ in prompts]

    sampler.generate = generate
    m = tr.math500_accuracy(sampler, TOK, problems, seed=5, runs=3, temperature=0.6, max_new_tokens=32, log=lambda s: None)
    assert seeds == [5, 6, 7] and all(c.temperature == 0.6 for c in sampler.calls)
    assert m.detail["runs"] == [1.0, 0.0, 0.0] and m.value == pytest.approx(1 / 3)
    assert m.detail["std"] == pytest.approx(0.57735, abs=1e-4)  # the sample standard deviation of 1, 0, 0
    assert m.outcomes == [pytest.approx(1 / 3)] * 2


def test_gpqa_accuracy_is_known_for_scripted_policies(sample):
    questions = sample[2]

    def knows(prompt, k):  # finds the correct option's letter in the shuffled prompt
        q = next(q for q in questions if q.question in prompt)
        line = next(ln for ln in prompt.splitlines() if ln[3:].split("<")[0] == q.correct)
        return f"Because.\nAnswer: {line[0]}"

    m = tr.gpqa_accuracy(Scripted(knows), TOK, questions, seed=0, runs=3, log=lambda s: None)
    assert (m.name, m.n, m.value, m.detail["runs"]) == ("gpqa_diamond_accuracy", 4, 1.0, [1.0, 1.0, 1.0])
    # always "A": right exactly where the seeded permutation put the correct option first
    m = tr.gpqa_accuracy(Scripted(lambda p, k: "Answer: A"), TOK, questions, seed=0, runs=3, log=lambda s: None)
    expected = [sum(tr.gpqa_options(q, s)[1] == "A" for q in questions) / 4 for s in range(3)]
    assert m.detail["runs"] == expected and m.value == pytest.approx(sum(expected) / 3)
    assert m.detail["picked"]["A"] == 12 and sum(m.detail["correct_letters"].values()) == 12
    assert m.groups == ["Chemistry", "Physics", "Biology", "Physics"]


# ---- the real model ----------------------------------------------------------------------------------

def test_the_real_smollm2_runs_both_sets_end_to_end(sample):
    from act_pipeline.config import ModelConfig
    from act_pipeline.models import load_model, resolve_base_model
    from act_pipeline.sampling.hf import TransformersSampler

    path = resolve_base_model(ModelConfig(source="smollm2-gguf"), 0, log=lambda m: None)
    model, tok = load_model(str(path), False, "float32", "cpu")
    sets = {"math500": sample[1][:2], "gpqa_diamond": sample[2][:2]}
    ms = tr.evaluate_sampler(TransformersSampler(model, tok, 8), tok, sets, 0, TransferConfig(runs=2, max_new_tokens=8),
                             temperature=0.7, thinking=False, log=lambda s: None)
    assert [(m.name, m.n) for m in ms] == [("math500_accuracy", 2), ("gpqa_diamond_accuracy", 2)]
    for m in ms:
        assert 0 <= m.value <= 1 and len(m.detail["runs"]) == 2 and all(0 <= v <= 1 for v in m.detail["runs"])
        assert 0 <= m.detail["std"] <= 1 and m.detail["completions"] == 2 * m.n and not m.detail["decoded_once"]
        assert m.detail["examples"][0]["completion"]  # it generated text


# ---- the asset and the report ------------------------------------------------------------------------

def test_the_asset_scores_every_arm_and_the_report_shows_it_beside_the_paper(tmp_path, tiny_model):
    from act_pipeline.assets.graph import build_assets
    from act_pipeline.definitions import build_resources, make_definitions
    from act_pipeline.evaluation.metrics import Metric
    from act_pipeline.evaluation.report import write_report
    from act_pipeline.files import write_json

    home = tmp_path / "home"
    profile = tmp_path / "transfer.yaml"
    profile.write_text(SMOKE.read_text() + "arms: []\ntransfer:\n  enabled: true\n  math500: sets/math500.jsonl\n"
                       "  gpqa_diamond: sets/gpqa_diamond.parquet\n  runs: 2\n  max_new_tokens: 4\n  limit: 2\n")
    # the sets must be there when the graph is built: the error names the setting
    with pytest.raises(ConfigError, match=r"`transfer.math500` names 'sets/math500.jsonl', but .* does not exist"):
        make_definitions(str(profile), str(home))
    write_samples(home / "sets")
    write_samples(home / "sets", parquet=True)
    cfg = load_config(profile)
    keys = {a.key for a in make_definitions(str(profile), str(home)).assets}
    assert dg.AssetKey("transfer_evaluation") in keys
    assert dg.AssetKey("transfer_evaluation") not in {a.key for a in make_definitions(str(SMOKE), str(home)).assets}
    report = asset(cfg, "eval_report")
    assert dg.AssetKey("transfer_evaluation") in report.dependency_keys
    # the checkpoints arrive as manifests (as the real graph passes them): the tiny model twice
    def materialize():
        return dg.materialize(build_assets(cfg), selection=["transfer_evaluation"],
                              resources=build_resources(str(profile), str(home)), instance=dg.DagsterInstance.ephemeral())

    for name in ("base_model", "alfworld__act_checkpoint"):
        write_json(home / "manifests" / f"{name}.json", {"uri": tiny_model, "hash": f"h-{name}", "name": "tiny"})
    res = materialize()
    out = res.output_for_node("transfer_evaluation")
    doc = json.loads(open(out["uri"]).read())
    assert sorted(doc["results"]) == ["act_checkpoint", "prompt_no_thinking", "prompt_thinking"]
    assert doc["meta"]["sets"]["gpqa_diamond"]["items"] == 2 and doc["meta"]["runs"] == 2
    for arm, ms in doc["results"].items():
        assert [(m["name"], m["n"], len(m["detail"]["runs"])) for m in ms] == \
            [("math500_accuracy", 2, 2), ("gpqa_diamond_accuracy", 2, 2)]
    assert set(out["metrics"]) == {f"{a}/{n}" for a in doc["results"] for n in ("math500_accuracy",
                                                                                  "gpqa_diamond_accuracy")}
    # the report: our transfer table beside the paper's Table 2, labelled as the paper's
    ours = {"prompt_no_thinking": [Metric("judgement_accuracy", 0.5, "valid_unseen", 2, 0, {}, [1, 0])]}
    results = {a: [Metric.from_dict(m) for m in ms] for a, ms in doc["results"].items()}
    paths = write_report(tmp_path / "report", ours, {"profile": "t", "seed": 0}, transfer={"meta": doc["meta"],
                                                                                          "results": results})
    md = paths["markdown"].read_text()
    assert "## Reasoning transfer (MATH-500, GPQA-Diamond)" in md
    assert "| Arm | MATH-500 | GPQA-Diamond | MATH-500, paper (not ours) | GPQA-Diamond, paper (not ours) |" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| ACT only |") and "runs, N=2" in ln)
    assert row.endswith("| 87.73% | 53.37% |")
    assert "Paper rows we do not run: IL (87.00% / 44.61%); Early Experience (86.86% / 51.85%); RL" in md
    assert json.loads(paths["json"].read_text())["paper_table2"]["ACT"] == [87.73, 53.37]
    # scored again on the same items and settings: read back, not generated
    res = materialize()
    assert res.output_for_node("transfer_evaluation")["metrics"] == out["metrics"]
