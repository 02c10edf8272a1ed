"""Voice of the customer, the pure parts (models/voc.py, clarion/voc/scrub.py): each checked
against an independent computation (scikit-learn's metrics, hand-made clusters, counted n-grams)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, silhouette_score

from clarion.voc.scrub import scrub_ticket
from models.voc import (
    SentimentClassifier,
    by_size,
    choose_k,
    class_tfidf,
    example_phrases,
    lexicon_sentiment,
    macro_f1,
    satisfaction_label,
    time_split,
    topic_names,
)


def blobs(k: int, per: int = 40, dim: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated clusters of unit vectors (as sentence embeddings are)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k] * 3
    truth = np.repeat(np.arange(k), per)
    x = centres[truth] + rng.normal(0, 0.3, (len(truth), dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


def test_k_is_the_best_silhouette_and_recovers_planted_clusters() -> None:
    from sklearn.metrics import adjusted_rand_score

    x, truth = blobs(5)
    k, labels, curve = choose_k(x, 3, 8, seed=0)
    assert k == 5 and max(curve, key=curve.get) == 5
    assert set(curve) == set(range(3, 9))
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert curve[5] == pytest.approx(silhouette_score(x, labels), abs=1e-6)
    sizes = np.bincount(labels)
    assert list(sizes) == sorted(sizes, reverse=True)  # topic 0 is the largest


def test_too_few_tickets_for_the_range_is_refused_with_the_count() -> None:
    x, _ = blobs(2, per=2)
    with pytest.raises(ValueError, match="4 tickets"):
        choose_k(x, 5, 8)


def test_renumbering_by_size_keeps_the_partition() -> None:
    labels = np.array([2, 2, 0, 1, 1, 1])
    assert list(by_size(labels)) == [1, 1, 2, 0, 0, 0]


def test_class_tfidf_names_a_topic_by_its_own_words() -> None:
    texts = [
        "Hi, my refund has not arrived, refund please",
        "Where is my refund? Returned weeks ago",
        "Cannot log in, password reset fails",
        "Password reset link expired, cannot log in",
    ]
    labels = np.array([0, 0, 1, 1])
    terms = class_tfidf(texts, labels)
    # independent: the words that occur in one topic only, by count
    assert terms[0][0][0] == "refund"
    assert {w for w, _ in terms[1][:3]} == {"log", "password", "reset"}  # twice each, topic 1 only
    assert all(w not in {"hi", "my", "please"} for t in terms for w, _ in t)
    names = topic_names(terms)
    assert names[0].startswith("refund · ") and len(names[0].split(" · ")) == 3


def test_topic_names_stay_unique() -> None:
    terms = [[("a", 3), ("b", 2), ("c", 1), ("d", 0.5)], [("a", 3), ("b", 2), ("c", 1), ("e", 0.5)]]
    assert topic_names(terms) == ["a · b · c", "a · b · c · e"]


def test_scrub_removes_names_emails_phones_and_order_numbers() -> None:
    text = (
        "Order #48213 and order no. 991234, also order 5512: where is it?\n"
        "Call me at +44 7700 900123 or write to anna.berg@example.com.\nThanks, Anna BERG"
    )
    out = scrub_ticket(text, names=("Anna", "Berg"), emails=("anna.berg@example.com",))
    for gone in ("48213", "991234", "5512", "7700", "anna", "Anna", "BERG", "example.com"):
        assert gone not in out, out
    assert out.count("[order]") == 3 and "[phone]" in out and "[email]" in out and "[name]" in out
    # a name inside another word is not a name: "Annabelle" stays when the contact is "Anna"
    assert "Annabelle" in scrub_ticket("Annabelle wrote", names=("Anna",))


def test_the_scrubs_shortcuts_give_what_one_regex_per_contact_gives() -> None:
    """scrub_ticket skips compiling a contact's address or name when the text cannot hold it and
    replaces an ASCII address without a regex; the definition is one case-insensitive regex each.
    Mixed case, repeats, a name inside a word, non-ASCII text, names and addresses (the Kelvin sign
    folds to "k", the dotted capital I does not fold to "i"), and an address absent from the text."""
    import re

    from clarion.privacy.scrub import EMAIL
    from clarion.privacy.scrub import scrub as privacy_scrub
    from clarion.voc import scrub as module

    def by_definition(text: str, names: tuple[str, ...], emails: tuple[str, ...]) -> str:
        out = text
        for address in emails:
            out = re.sub(re.escape(address), "[email]", out, flags=re.IGNORECASE)
        out = EMAIL.sub("[email]", out)
        out = module._HASH_NUMBER.sub("[order]", out)
        out = module._ORDER_NUMBER.sub(lambda m: m.group(1) + "[order]", out)
        out = privacy_scrub(out)
        out = module._PHONE_MARK.sub("[phone]", module._EMAIL_MARK.sub("[email]", out))
        out = module._LONG_DIGITS.sub("[order]", out)
        for name in sorted(set(names), key=len, reverse=True):
            out = re.sub(rf"(?i)(?<!\w){re.escape(name)}(?!\w)", "[name]", out)
        return out

    cases = [
        ("Write to ANNA.Berg@Example.com or anna.berg@example.COM, Anna.", ("Anna", "Berg"),
         ("anna.berg@example.com",)),
        ("mail me: a.b at shop dot de (a.b@shop.de) thanks Annabelle and anna", ("Anna",), ("A.B@Shop.de",)),
        ("Grüße, Zoë Müller (zoë.müller@beispiel.de) ZOË", ("Zoë", "Müller"), ("ZOË.MÜLLER@beispiel.de",)),
        ("Signed \u212aim, kim@x.io", ("kim",), ("KIM@X.IO",)),  # KELVIN SIGN K folds to k
        ("\u0130lkay wrote from ilkay@x.io", ("ilkay",), ("\u0130LKAY@x.io",)),
        ("No address here, only a name: Berg.", ("Berg",), ("someone@else.org",)),
        ("ab@c.de ab@c.deab@c.de", ("de",), ("ab@c.de",)),
    ]  # fmt: skip
    for text, names, emails in cases:
        assert scrub_ticket(text, names=names, emails=emails) == by_definition(text, names, emails), text
    assert not module._may_hold("plain ascii text", "Anna") and module._may_hold("Zoë", "anna")


def test_example_phrases_need_enough_distinct_customers_and_hold_no_names_or_tokens() -> None:
    texts = [f"The parcel never arrived at all. Hello {n}" for n in range(6)] + [
        "the parcel never arrived at all",  # the same customer twice counts once
        "call me on [phone] the parcel never arrived",
    ]
    customers = np.array([1, 2, 3, 4, 4, 5, 5, 6])
    labels = np.zeros(len(texts), dtype=int)
    phrases = example_phrases(texts, labels, customers, min_customers=5)[0]
    assert [p for p, _ in phrases] == ["parcel never arrived at all"]  # ties: alphabetical; overlaps skipped
    # counted independently: distinct customers whose sentences hold the phrase
    for p, count in phrases:
        writers = {c for t, c in zip(texts, customers, strict=True) if p in t.lower() and "[" not in t}
        assert len(writers) == count >= 5
    assert example_phrases(texts, labels, customers, min_customers=6) == [[]]
    assert example_phrases(texts, labels, customers, 5, forbidden=frozenset({"parcel"})) == [[]]


def test_macro_f1_equals_scikit_learns() -> None:
    rng = np.random.default_rng(3)
    classes = np.array(["negative", "neutral", "positive"])
    truth, pred = classes[rng.integers(0, 3, 200)], classes[rng.integers(0, 3, 200)]
    assert macro_f1(truth, pred) == pytest.approx(f1_score(truth, pred, average="macro"))


def test_the_hold_out_is_the_newest_fifth() -> None:
    created = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 10])
    held = time_split(created)
    assert sorted(created[held]) == [9, 10]
    assert created[~held].max() < created[held].min()


def test_satisfaction_labels_and_the_lexicon_rule() -> None:
    assert [satisfaction_label(s) for s in (1, 2, 3, 4, 5, None, float("nan"))] == [
        "negative",
        "negative",
        "neutral",
        "positive",
        "positive",
        None,
        None,
    ]
    got = lexicon_sentiment(
        ["Terrible, never works", "thank you", "where is it", "great but terrible"],
        ["terrible", "never works"],
        ["thank", "great"],
    )
    assert got == ["negative", "positive", "neutral", "neutral"]


def test_cross_fitted_probabilities_never_see_their_own_label() -> None:
    x, truth = blobs(3, per=30)
    y = np.array(["negative", "neutral", "positive"], dtype=object)[truth]
    y_flipped = y.copy()
    y_flipped[0] = "positive"  # a wrong label on ticket 0 cannot change ticket 0's own prediction
    a = SentimentClassifier(seed=0).cross_fitted(x, y)[0]
    b = SentimentClassifier(seed=0).cross_fitted(x, y_flipped)[0]
    # the fold holding ticket 0 fitted on the same other tickets in both: same probabilities
    assert a == pytest.approx(b)
    assert np.argmax(a) == 0


def test_a_phrase_every_topic_shares_is_no_example_of_any() -> None:
    """A greeting written by as many customers in another topic is not characteristic of either."""
    texts = ["I hope you can help. My refund is late"] * 6 + ["I hope you can help. Password reset fails"] * 6
    customers = np.arange(12)
    labels = np.array([0] * 6 + [1] * 6)
    phrases = example_phrases(texts, labels, customers, min_customers=5)
    assert phrases == [[("my refund is late", 6)], [("password reset fails", 6)]]


def test_a_k_range_the_wrong_way_round_fails_to_load_with_the_fix(tmp_path) -> None:
    from clarion.config import load_settings

    (tmp_path / "clarion.yaml").write_text("ml:\n  voc:\n    k_min: 9\n    k_max: 5\n")
    with pytest.raises(Exception, match=r"k_min \(9\) is above ml.voc.k_max \(5\): set k_min <= k_max"):
        load_settings(tmp_path / "clarion.yaml", env={})
