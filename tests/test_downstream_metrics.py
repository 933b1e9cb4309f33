"""The downstream metrics against values computed by hand."""
import pytest

from xlmr_plugin.evaluation.ner_metrics import chunks, entity_scores
from xlmr.downstream.qa_metrics import gold_answers, mlqa_score, normalize_mlqa, squad_score


def test_iob2_chunks():
    assert chunks(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert chunks(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 2)]


def test_iob1_chunks_start_with_i_and_use_b_only_between_neighbours():
    assert chunks(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]


def test_a_type_change_without_b_starts_a_new_chunk():
    assert chunks(["I-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2)]
    assert chunks(["O", "I-MISC", "I-MISC"]) == [("MISC", 1, 2)]  # conlleval accepts I after O in IOB2 too


def test_iobes_chunks():
    assert chunks(["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]) == [("PER", 0, 0), ("LOC", 1, 3), ("LOC", 4, 4)]


def test_entity_f1_counts_exact_chunks_only():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG"]]
    # gold: PER(0,1) LOC(3) | ORG(0); pred: PER(0,1) ORG(3) | ORG(0,1); one correct of 3 and 3
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(100 / 3)
    assert scores["recall"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 / 3)
    assert scores["per_type"]["PER"]["f1"] == 100.0
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_entity_f1_with_unequal_counts():
    gold = [["B-PER", "O", "B-LOC", "O", "B-ORG"]]
    pred = [["B-PER", "O", "B-PER", "O", "O"]]
    scores = entity_scores(gold, pred)  # 1 correct, 2 predicted, 3 gold: P 50, R 33.3, F1 40
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((50.0, 100 / 3, 40.0))


def test_mismatched_sentences_are_refused():
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O", "O"]], [["O"]])


def test_squad_exact_match_and_f1():
    golds = {"q1": ["Eiffel tower", "Paris"], "q2": ["the Eiffel Tower"]}
    predictions = {"q1": "the Eiffel Tower!", "q2": "Eiffel"}
    # q1: exact after normalisation; q2: P = 1, R = 1/2, F1 = 2/3
    assert squad_score(predictions, golds) == pytest.approx({"exact_match": 50.0, "f1": 100 * 5 / 6, "questions": 2})


def test_a_missing_prediction_scores_zero():
    assert squad_score({}, {"q": ["x"]})["f1"] == 0.0


def test_mlqa_normalisation_per_language():
    assert normalize_mlqa("¡Hola, el mundo!", "es") == "hola mundo"  # Unicode punctuation, Spanish articles
    assert normalize_mlqa("Der Hund", "de") == "hund"
    assert normalize_mlqa("北京市。", "zh") == "北 京 市"
    assert normalize_mlqa("الكتاب", "ar") == "كتاب"
    with pytest.raises(ValueError, match="no language 'fr'"):
        normalize_mlqa("le chat", "fr")


def test_mlqa_chinese_f1_is_per_character():
    # 北 京 市 against 北 京: 2 shared, P = 2/3, R = 1, F1 = 0.8
    assert mlqa_score({"q": "北京市"}, {"q": ["北京"]}, "zh") == pytest.approx(
        {"exact_match": 0.0, "f1": 80.0, "questions": 1})
    # SQuAD's normalisation would keep the inverted exclamation mark; MLQA's removes it
    assert mlqa_score({"q": "¡hola!"}, {"q": ["Hola"]}, "es")["exact_match"] == 100.0
    assert squad_score({"q": "¡hola!"}, {"q": ["Hola"]})["exact_match"] == 0.0


def test_gold_answers_read_squad_json():
    data = {"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "a", "question": "?", "answers": [{"text": "x", "answer_start": 0}, {"text": "y", "answer_start": 0}]}]}]}]}
    assert gold_answers(data) == {"a": ["x", "y"]}
