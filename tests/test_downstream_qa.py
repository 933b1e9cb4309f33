"""SQuAD v1.1 / MLQA span-extraction QA: the json reader, windows and offsets on real
multilingual paragraphs, the `xlmr-mlqa` command end to end with a tiny pretrained
model, and MLQA's metric on fixed predictions against hand-computed values."""
import json
import math
import re

import numpy as np
import pytest

from conftest import CORPUS
from plugin_utils import json_records
from xlmr.preprocess.binarize import Encoder
from probe_utils import probe_model, run_tool
from xlmr.downstream.qa_features import PieceEncoder, answer_pieces, WindowConfig, best_spans, windows, write_qa_split
from xlmr.downstream.mlqa import parse_args, recipe
from xlmr.downstream.qa_metrics import MLQA_LANGS, mlqa_score, squad_score
from xlmr.downstream.squad import DataError, mlqa_path, read_squad

WORD = re.compile(r"\w+")
E2E_LANGS = ["en", "de", "es", "vi", "zh"]  # MLQA's languages with text in the shared corpus (no ar, hi)
EPOCHS = 30  # enough for the tiny model to learn some of its 15 training questions by heart


def paragraphs(lang: str, n: int, min_chars: int = 150, max_chars: int = 600) -> list:
    with open(CORPUS / f"{lang}.txt", encoding="utf-8") as f:
        lines = (line.strip() for line in f)
        return [line for line in lines if min_chars < len(line) < max_chars][:n]


def word_answers(context: str, k: int) -> list:
    """(text, start) of ``k`` alphabetic words of 4-10 characters (runs between punctuation
    in Japanese and Chinese; not articles) or word pairs, spread over the context."""
    words = [m for m in WORD.finditer(context) if m.group().isalpha() and 4 <= len(m.group()) <= 10]
    picks = np.linspace(0, len(words) - 2, k).astype(int)
    out = []
    for n, i in enumerate(picks):
        last = words[i + 1] if n % 2 and context[words[i].end():words[i + 1].start()] == " " else words[i]
        out.append((context[words[i].start():last.end()], words[i].start()))
    return out


def squad_file(path, items) -> dict:
    """A SQuAD v1.1 json file of [(context, [(qid, question, text, start), ...]), ...]."""
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": question, "answers": [{"answer_start": s, "text": t}]}
                                     for qid, question, t, s in qas]}
        for context, qas in items]}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return data


def qa_items(lang: str, n_paragraphs: int, per_paragraph: int, prefix: str, skip: int = 0) -> list:
    """Questions on ``n_paragraphs`` real paragraphs (after the first ``skip``); each question's
    text is the start of another paragraph."""
    texts = paragraphs(lang, skip + 2 * n_paragraphs)[skip:]
    contexts, questions = texts[:n_paragraphs], texts[n_paragraphs:]
    return [(c, [(f"{prefix}{p}-{k}", " ".join(questions[p].split()[:8]) + "?", t, s)
                 for k, (t, s) in enumerate(word_answers(c, per_paragraph))])
            for p, c in enumerate(contexts)]


def test_reader_counts_mismatched_answers_and_drops_them_for_training(tmp_path):
    items = qa_items("en", 2, 2, "q")
    context, qas = items[1]
    qid, question, text, start = qas[0]
    qas[0] = (qid, question, text, start + 1)  # off by one, as a few SQuAD-derived files are
    path = tmp_path / "dev-v1.1.json"
    squad_file(path, items)
    evaluation, training = read_squad(path), read_squad(path, training=True)
    assert (len(evaluation.questions), evaluation.mismatched) == (4, 1)
    assert [q.qid for q in training.questions] == ["q0-0", "q0-1", "q1-1"]
    assert evaluation.golds()["q1-0"] == [text]
    assert evaluation.contexts[evaluation.questions[3].paragraph] == context


def test_reader_errors_name_the_file_and_question(tmp_path):
    items = qa_items("de", 1, 2, "q")
    path = tmp_path / "train-v1.1.json"
    data = squad_file(path, items)
    del data["data"][0]["paragraphs"][0]["qas"][1]["question"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}: question q0-1: no str field 'question'"):
        read_squad(path)
    data["data"][0]["paragraphs"][0]["qas"][1] = data["data"][0]["paragraphs"][0]["qas"][0]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match="question q0-0: the id appears twice"):
        read_squad(path)
    path.write_text('{"data": [\n{"title": }', encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:2: not json"):
        read_squad(path)


def test_mlqa_files_are_found_by_their_official_names(tmp_path):
    target = tmp_path / "MLQA_V1" / "test" / "test-context-vi-question-vi.json"
    squad_file(target, qa_items("vi", 1, 1, "v"))
    assert mlqa_path(tmp_path / "MLQA_V1", "test", "vi") == target
    with pytest.raises(FileNotFoundError, match="test-context-de-question-de.json"):
        mlqa_path(tmp_path / "MLQA_V1", "test", "de")


def test_windows_cover_the_context_with_stride():
    assert windows(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert windows(3, 4, 2) == [(0, 3)]
    assert windows(0, 4, 2) == [(0, 0)]


@pytest.mark.parametrize("lang", ["en", "de", "ru", "ja"])
def test_every_answer_maps_back_to_its_text_through_the_windows(lang, xlmr_data, tmp_path):
    items = qa_items(lang, 3, 6, lang)
    path = tmp_path / f"{lang}.json"
    squad_file(path, items)
    data = read_squad(path)
    pieces = PieceEncoder(xlmr_data / "spm.model", xlmr_data / "dict.txt")
    cfg = WindowConfig(max_seq_length=40, doc_stride=8, max_query_length=6)
    n = write_qa_split(data, pieces, cfg, tmp_path / "bin", "valid")
    meta = json.loads((tmp_path / "bin" / "valid.windows.json").read_text(encoding="utf-8"))
    from fairseq.data import indexed_dataset
    inputs = indexed_dataset.MMapIndexedDataset(str(tmp_path / "bin" / "input" / "valid"))
    targets = indexed_dataset.MMapIndexedDataset(str(tmp_path / "bin" / "target" / "valid"))
    assert len(inputs) == len(targets) == len(meta["windows"]) == n > len(data.questions)
    encoder = Encoder(xlmr_data / "spm.model", xlmr_data / "dict.txt")
    found, straddling = {}, 0
    for w, (q, start, length, offset) in enumerate(meta["windows"]):
        question = data.questions[q]
        tokens = inputs[w].numpy()
        q_ids = encoder.encode([question.question])[0][:-1][:6]
        context_ids = encoder.encode([data.contexts[question.paragraph]])[0][:-1]
        # <s> question </s> </s> context window </s>, ids exactly as xlmr-prepare binarizes
        assert tokens.tolist() == [0, *q_ids, 2, 2, *context_ids[start:start + length], 2]
        assert offset == len(q_ids) + 3 and len(tokens) <= cfg.max_seq_length
        s, e = targets[w].tolist()
        spans = meta["spans"][question.paragraph]
        first, last = answer_pieces(np.array(spans), question.answers[0].start,
                                    question.answers[0].start + len(question.answers[0].text))
        if (s, e) == (0, 0):  # the window lacks the answer, or cuts it
            assert not start <= first <= last < start + length
            straddling += start <= first < start + length <= last
            continue
        assert offset <= s <= e < offset + length
        context = data.contexts[question.paragraph]
        assert context[spans[start + s - offset][0]:spans[start + e - offset][1]] == question.answers[0].text
        found[question.qid] = found.get(question.qid, 0) + 1
    assert sorted(found) == sorted(q.qid for q in data.questions)  # every answer is in some window
    assert max(found.values()) > 1 and straddling > 0  # in several windows; cut by some window edges

    # logits pointing at each window's target give back every answer text exactly
    starts, ends = [], []
    for w in range(n):
        s, e = targets[w].tolist()
        starts.append(np.eye(len(inputs[w]))[s] * 10)
        ends.append(np.eye(len(inputs[w]))[e] * 10)
    assert best_spans(meta, starts, ends, n_best=3, max_answer_length=30) == {
        q.qid: q.answers[0].text for q in data.questions}


def test_best_span_respects_order_length_and_context():
    # one question, "alpha beta gamma": pieces at characters 0-5, 6-10, 11-16; window offset 2
    meta = {"questions": ["q"], "paragraphs": [0], "contexts": ["alpha beta gamma"],
            "spans": [[[0, 5], [6, 10], [11, 16]]], "windows": [[0, 0, 3, 2]]}
    start = np.array([9.0, 9, 1, 3, 0, 0])  # <s> and the question score highest but are not context
    end = np.array([9.0, 9, 4, 0.5, 2.5, 0])
    # the best end (alpha, 4) is before the best start (beta, 3); best pair: beta..gamma, 3 + 2.5
    assert best_spans(meta, [start], [end]) == {"q": "beta gamma"}
    assert best_spans(meta, [start], [end], max_answer_length=1) == {"q": "alpha"}  # 1 + 4 beats 3 + 0.5
    assert best_spans(meta, [start], [end], n_best=1) == {"q": ""}  # the only pair ends before it starts


def test_mlqa_scores_on_fixed_predictions():
    golds = {"v1": ["của Hà Nội"], "v2": ["thành phố lớn", "thành phố"]}
    predictions = {"v1": "Hà Nội.", "v2": "một thành phố"}
    # v1: "của" is a Vietnamese article, "." punctuation: exact. v2: best gold "thành phố": P 2/3, R 1, F1 0.8
    assert mlqa_score(predictions, golds, "vi") == pytest.approx({"exact_match": 50.0, "f1": 90.0, "questions": 2})
    # Hindi has no articles; the danda is Unicode punctuation: "भारत की राजधानी" vs "राजधानी": P 1/3, R 1, F1 0.5
    assert mlqa_score({"h": "भारत की राजधानी।"}, {"h": ["राजधानी"]}, "hi") == pytest.approx(
        {"exact_match": 0.0, "f1": 50.0, "questions": 1})


def test_recipe_counts_updates_with_accumulation_and_passes_unknown_flags_to_fairseq(tmp_path):
    config = parse_args(["ckpt.pt", "--squad-train", "t.json", "--mlqa", "M", "--out", str(tmp_path),
                         "--batch-size", "4", "--update-freq", "8", "--fp16"])
    flags = recipe(config.recipe, train_windows=1000)
    value = {flag: flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag.startswith("--")}
    # XTREME's 4 x 8 windows per update: ceil(1000 / 32) = 32 updates per epoch, 3 epochs
    assert (value["--total-num-update"], value["--max-update"], value["--warmup-updates"]) == ("96", "96", "95")
    assert (value["--lr"], value["--update-freq"], value["--weight-decay"]) == ("3e-05", "8", "0.0001")
    assert flags[-1] == "--fp16" and config.langs == MLQA_LANGS
    assert sorted(MLQA_LANGS) == ["ar", "de", "en", "es", "hi", "vi", "zh"]
    with pytest.raises(SystemExit):
        parse_args(["ckpt.pt", "--squad-train", "t.json", "--mlqa", "M", "--out", "o", "--langs", "en,fr"])


@pytest.fixture(scope="module")
def mlqa_run(xlmr_data, tmp_path_factory):
    """The whole command on tiny SQuAD / MLQA files of real paragraphs."""
    dest, checkpoint = probe_model(xlmr_data, tmp_path_factory)
    root = tmp_path_factory.mktemp("mlqa")
    train = qa_items("en", 8, 2, "train")
    qid, question, text, start = train[0][1][0]
    train[0][1][0] = (qid, question, text, start + 1)  # answer_start off by one: counted, not trained on
    squad_file(root / "squad" / "train-v1.1.json", train)
    # the dev file repeats the training questions: a model that learned must answer some of them
    squad_file(root / "squad" / "dev-v1.1.json", train)
    for lang in E2E_LANGS:
        items = qa_items(lang, 2, 2, lang, skip=16 if lang == "en" else 0)  # not the training paragraphs
        if lang == "de":  # counted, and still scored: the metric reads the answer texts only
            qid, question, text, start = items[1][1][1]
            items[1][1][1] = (qid, question, text, start + 3)
        squad_file(root / "MLQA_V1" / "test" / f"test-context-{lang}-question-{lang}.json", items)
    out = root / "out"
    run_tool("xlmr-mlqa", [
        checkpoint, "--data-dir", dest, "--squad-train", root / "squad" / "train-v1.1.json",
        "--squad-dev", root / "squad" / "dev-v1.1.json", "--mlqa", root / "MLQA_V1", "--langs", ",".join(E2E_LANGS),
        "--out", out, "--max-seq-length", "48", "--doc-stride", "16", "--max-query-length", "8",
        "--batch-size", "8", "--epochs", EPOCHS, "--warmup-updates", "10", "--lr", "2e-3", "--eval-batch-size", "16",
        "--cpu", "--log-interval", "1",  # fairseq-train flags
    ])
    return root, out


def test_mlqa_command_fine_tunes_and_scores_every_language(mlqa_run):
    root, out = mlqa_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert sorted(results["scores"]) == sorted([*E2E_LANGS, "avg"])
    for lang in E2E_LANGS:
        golds = read_squad(root / "MLQA_V1" / "test" / f"test-context-{lang}-question-{lang}.json").golds()
        predictions = json.loads((out / "predictions" / f"mlqa_test_{lang}.json").read_text(encoding="utf-8"))
        assert sorted(predictions) == sorted(golds)
        expected = mlqa_score(predictions, golds, lang)
        assert results["scores"][lang] == pytest.approx({"exact_match": expected["exact_match"], "f1": expected["f1"]})
        assert results[f"questions_{lang}"] == 4
    assert results["scores"]["avg"]["f1"] == pytest.approx(np.mean([results["scores"][l]["f1"] for l in E2E_LANGS]))
    dev = squad_score(json.loads((out / "predictions" / "squad_dev.json").read_text(encoding="utf-8")),
                      read_squad(root / "squad" / "dev-v1.1.json").golds())
    assert results["squad_dev"] == pytest.approx({k: round(v, 2) for k, v in dev.items()})
    assert results["squad_dev"]["exact_match"] >= 25  # 50 when written: the head learned its questions
    assert "| avg |" in (out / "results.md").read_text(encoding="utf-8")
    mismatched = {path.split("/")[-1]: n for path, n in results["answers_not_in_context"].items()}
    assert mismatched == {"train-v1.1.json": 1, "dev-v1.1.json": 1, **{
        f"test-context-{lang}-question-{lang}.json": int(lang == "de") for lang in E2E_LANGS}}


def test_mlqa_fine_tuning_runs_the_recipe_through_fairseq_train(mlqa_run):
    _, out = mlqa_run
    log = (out / "checkpoints" / "train.log").read_text(encoding="utf-8")
    train_windows = len(json.loads((out / "data" / "train.windows.json").read_text(encoding="utf-8"))["windows"])
    updates = json_records(log, "train_inner")
    meta = json.loads((out / "data" / "train.windows.json").read_text(encoding="utf-8"))
    assert len(meta["questions"]) == 15 and "train0-0" not in meta["questions"]  # the mismatched one is dropped
    assert len(updates) == EPOCHS * math.ceil(train_windows / 8)  # batches of 8 windows
    assert all(np.isfinite(r["loss"]) for r in updates)
    epochs = json_records(log, "train")
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] / 2
    assert json_records(log, "valid")[-1]["valid_num_updates"] == len(updates)
    assert (out / "checkpoints" / "checkpoint_best.pt").is_file()
