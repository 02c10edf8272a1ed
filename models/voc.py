"""Voice of the customer, the pure part: topics of support tickets and their sentiment.

Topics: the tickets' sentence embeddings (already L2-normalised, so Euclidean k-means is cosine
k-means) are clustered with k-means for every k in a range; the k with the best silhouette wins,
because it needs no labels and rewards topics that are both tight and apart. Each topic is named by
its most characteristic words, class-based TF-IDF (c-TF-IDF, as BERTopic does): a word scores high
for a topic when it is frequent in the topic's tickets and rare across topics.

Sentiment: a logistic regression on the same embeddings, learnt from the tickets whose customer
answered the satisfaction survey (1-2 negative, 3 neutral, 4-5 positive). It reads the whole
sentence, where the staging lexicon only counts a few words; both are measured on the same
held-out tickets (the newest), by macro F1 so the small classes count as much as the large one.

Everything here works on arrays and lists; the stage (clarion/voc/stage.py) reads and writes the
warehouse. Texts given to these functions are already scrubbed of personal data.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

SENTIMENTS = ("negative", "neutral", "positive")
NAME_JOIN = " · "
# words that say nothing about what a ticket is about: greetings, sign-offs, scrub tokens
TICKET_STOP_WORDS = frozenset(
    {
        "hi",
        "hello",
        "dear",
        "team",
        "good",
        "morning",
        "thanks",
        "thank",
        "regards",
        "cheers",
        "email",
        "phone",
        "order",
        "name",
        "redacted",
        "reach",
        "need",
        "write",
        "just",
        "ve",
        "ll",
        "don",
        "didn",
        "doesn",
        "isn",
        "wasn",
        "hasn",
        "haven",
        "won",
        "im",
    }
)
_TOKEN = re.compile(r"\[[a-z ]+\]")  # [email], [phone], [order], [name], [redacted ...]
_WORD = re.compile(r"[a-z][a-z']+")


def satisfaction_label(score: float | None) -> str | None:
    """The survey's 1-5 score as a sentiment: 1-2 negative, 3 neutral, 4-5 positive; none without."""
    try:
        if score is None or np.isnan(float(score)):
            return None
    except (TypeError, ValueError):  # pandas' NA
        return None
    return "negative" if score <= 2 else "neutral" if score == 3 else "positive"


# -- topics -----------------------------------------------------------------------------------------
@dataclass
class Topics:
    k: int
    labels: np.ndarray  # topic id per ticket, 0 = the largest topic
    silhouette: dict[int, float]  # k -> silhouette, the curve the choice was made on
    names: list[str] = field(default_factory=list)
    terms: list[list[tuple[str, float]]] = field(default_factory=list)


def choose_k(
    x: np.ndarray, k_min: int, k_max: int, seed: int = 0, sample: int = 3000
) -> tuple[int, np.ndarray, dict[int, float]]:
    """k-means for each k in k_min..k_max (n_init and random_state fixed); the best silhouette wins
    (ties: the smaller k). Returns (k, labels renumbered by topic size, {k: silhouette})."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(x)
    k_max = min(k_max, n - 1)
    if k_max < k_min:
        raise ValueError(f"{n} tickets are too few for {k_min} topics")
    curve: dict[int, float] = {}
    best: tuple[float, int, np.ndarray] | None = None
    for k in range(k_min, k_max + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
        score = float(
            silhouette_score(x, labels, sample_size=min(n, sample), random_state=seed)
            if n > sample
            else silhouette_score(x, labels)
        )
        curve[k] = round(score, 6)
        if best is None or score > best[0] + 1e-9:
            best = (score, k, labels)
    assert best is not None
    return best[1], by_size(best[2]), curve


def by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters so 0 is the largest (ties: the lower old id): stable names across reruns."""
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    remap = np.empty(ids.max() + 1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[labels]


def words(text: str) -> list[str]:
    """Lower-case words of a scrubbed text, scrub tokens, stop words and digits left out."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    text = _TOKEN.sub(" ", text.lower())
    out = []
    for w in _WORD.findall(text):
        w = w.strip("'")
        if len(w) > 2 and w not in ENGLISH_STOP_WORDS and w not in TICKET_STOP_WORDS:
            out.append(w)
    return out


def class_tfidf(texts: list[str], labels: np.ndarray, top: int = 8) -> list[list[tuple[str, float]]]:
    """c-TF-IDF per topic: tf(word, topic) / words in topic x log(1 + mean words per topic / tf(word)
    over all topics). The top words of each topic with their weights, best first (ties: alphabetical)."""
    k = int(labels.max()) + 1 if len(labels) else 0
    counts: list[dict[str, int]] = [defaultdict(int) for _ in range(k)]
    for text, label in zip(texts, labels, strict=True):
        for w in words(text):
            counts[label][w] += 1
    vocab = sorted({w for c in counts for w in c})
    index = {w: i for i, w in enumerate(vocab)}
    tf = np.zeros((k, len(vocab)))
    for t, c in enumerate(counts):
        for w, n in c.items():
            tf[t, index[w]] = n
    totals = tf.sum(axis=1, keepdims=True)
    avg_words = totals.mean()
    idf = np.log1p(avg_words / np.maximum(tf.sum(axis=0), 1))
    weight = tf / np.maximum(totals, 1) * idf
    out = []
    for t in range(k):
        order = sorted(range(len(vocab)), key=lambda i: (-weight[t, i], vocab[i]))[:top]
        out.append([(vocab[i], round(float(weight[t, i]), 6)) for i in order if weight[t, i] > 0])
    return out


def topic_names(terms: list[list[tuple[str, float]]], n: int = 3) -> list[str]:
    """A topic's name: its top n terms joined ("refund · weeks · returned"); unique across topics."""
    names: list[str] = []
    for t in terms:
        name = NAME_JOIN.join(w for w, _ in t[:n]) or "(no words)"
        extra = n
        while name in names and extra < len(t):  # two topics with the same top words: add the next
            name += NAME_JOIN + t[extra][0]
            extra += 1
        names.append(name)
    return names


def fit_topics(
    x: np.ndarray, texts: list[str], k_min: int, k_max: int, seed: int = 0, k: int | None = None
) -> Topics:
    """Cluster the embeddings, choose k by silhouette, name each topic by c-TF-IDF. ``k`` given (a
    choice made before): only that k is fitted, exactly as the choice fits it, and the curve holds
    that k's silhouette alone."""
    from threadpoolctl import threadpool_limits

    low, high = (k_min, k_max) if k is None else (k, k)
    with threadpool_limits(1):  # small matrices: one thread is ~5x faster than fighting over two cores
        k, labels, curve = choose_k(x, low, high, seed)
    terms = class_tfidf(texts, labels)
    return Topics(k=k, labels=labels, silhouette=curve, names=topic_names(terms), terms=terms)


def sentences(text: str) -> list[str]:
    """A text's sentences, lower-cased: split at line ends, ! and ?, and at a full stop before a
    capital (so "order no. [order]" stays one sentence with its token)."""
    return [s.lower() for s in re.split(r"[!?\n]+|\.\s+(?=[A-Z])|\.$", text) if s.strip()]


def example_phrases(
    texts: list[str],
    labels: np.ndarray,
    customers: np.ndarray,
    min_customers: int,
    forbidden: frozenset[str] = frozenset(),
    per_topic: int = 3,
    sizes: tuple[int, ...] = (5, 4, 3),
) -> list[list[tuple[str, int]]]:
    """Per topic, up to ``per_topic`` (phrase, distinct writers) pairs: word n-grams of its
    scrubbed texts that at least ``min_customers`` distinct customers wrote (k-anonymous), with no
    scrub token, no digit and no word in ``forbidden`` (e.g. every contact's first and last name),
    and characteristic of the topic: most of the customers who wrote it wrote it there (a greeting
    shared by every topic is no example of any). Longest and most shared first; a phrase sharing
    two words in a row with one already chosen is skipped."""
    k = int(labels.max()) + 1 if len(labels) else 0
    writers: list[dict[str, set]] = [defaultdict(set) for _ in range(k)]
    everywhere: dict[str, set] = defaultdict(set)
    for text, label, customer in zip(texts, labels, customers, strict=True):
        for sentence in sentences(text):
            if _TOKEN.search(sentence) or any(ch.isdigit() for ch in sentence):
                continue  # a sentence that held personal data or an order number gives no phrase
            tokens = re.findall(r"[a-z']+", sentence)
            if any(t in forbidden for t in tokens):
                continue
            for n in sizes:
                for i in range(len(tokens) - n + 1):
                    writers[label][" ".join(tokens[i : i + n])].add(customer)
                    everywhere[" ".join(tokens[i : i + n])].add(customer)
    out = []
    for t in range(k):
        shared = [
            (p, len(c))
            for p, c in writers[t].items()
            if len(c) >= min_customers and len(c) > len(everywhere[p]) / 2
        ]
        shared.sort(key=lambda pc: (-len(pc[0].split()), -pc[1], pc[0]))
        chosen: list[tuple[str, int]] = []
        seen: set[tuple[str, ...]] = set()  # the 2-word runs of the phrases chosen: no near-repeats
        for phrase, writers_of in shared:
            if len(chosen) == per_topic:
                break
            tokens = phrase.split()
            runs = {tuple(tokens[i : i + 2]) for i in range(len(tokens) - 1)}
            if not runs & seen:
                chosen.append((phrase, writers_of))
                seen |= runs
        out.append(chosen)
    return out


# -- sentiment --------------------------------------------------------------------------------------
def time_split(created: np.ndarray, holdout_share: float = 0.2) -> np.ndarray:
    """True for the newest ``holdout_share`` of the tickets (by creation time): the held-out set.
    By time, not at random: the classifier is judged on tickets written after those it learnt from."""
    if len(created) == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(created, kind="stable")
    held = np.zeros(len(created), dtype=bool)
    held[order[int(np.floor(len(created) * (1 - holdout_share))) :]] = True
    return held


def macro_f1(truth: list[str] | np.ndarray, predicted: list[str] | np.ndarray) -> float:
    """Mean of the per-class F1 over the three sentiments (a class absent from both counts as 1)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    scores = []
    for c in SENTIMENTS:
        tp = np.sum((truth == c) & (predicted == c))
        fp = np.sum((truth != c) & (predicted == c))
        fn = np.sum((truth == c) & (predicted != c))
        scores.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


class SentimentClassifier:
    """Logistic regression on sentence embeddings, three classes, balanced class weights (the
    neutral and positive tickets are fewer; unweighted, the model would lean on "negative")."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c, self.seed = c, seed
        self.model = None

    def _new(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.c, max_iter=2000, class_weight="balanced", random_state=self.seed)

    def fit(self, x: np.ndarray, y: list[str] | np.ndarray) -> SentimentClassifier:
        self.model = self._new().fit(x, np.asarray(y))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities in SENTIMENTS order (a class never seen in training gets 0)."""
        assert self.model is not None, "fit first"
        p = np.zeros((len(x), len(SENTIMENTS)))
        if len(x):
            raw = self.model.predict_proba(x)
            for j, c in enumerate(self.model.classes_):
                p[:, SENTIMENTS.index(c)] = raw[:, j]
        return p

    def cross_fitted(self, x: np.ndarray, y: np.ndarray, folds: int = 5) -> np.ndarray:
        """Probabilities for the training tickets from models that did not see them: a ticket's own
        survey score (recorded after it was written) never decides its sentiment."""
        p = np.zeros((len(x), len(SENTIMENTS)))
        fold = np.random.default_rng(self.seed).permutation(len(x)) % folds
        for f in range(folds):
            train = fold != f
            if len(set(y[train])) < 2 or not (~train).any():
                continue
            p[~train] = (
                SentimentClassifier(self.c, self.seed).fit(x[train], y[train]).predict_proba(x[~train])
            )
        return p


def choose_c(
    x: np.ndarray, y: np.ndarray, grid: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0), seed: int = 0
) -> float:
    """The regularisation with the best cross-validated macro F1 on the training tickets alone
    (ties: the stronger regularisation): chosen without looking at the held-out tickets."""
    best = (-1.0, grid[0])
    for c in grid:
        score = macro_f1(y, label_of(SentimentClassifier(c, seed).cross_fitted(x, y)))
        if score > best[0] + 1e-9:
            best = (score, c)
    return best[1]


def label_of(p: np.ndarray) -> np.ndarray:
    return np.array(SENTIMENTS, dtype=object)[np.argmax(p, axis=1)] if len(p) else np.array([], dtype=object)


def lexicon_sentiment(texts: list[str], negative: list[str], positive: list[str]) -> list[str]:
    """The staging model's rule (dbt stg_support_tickets.text_sentiment) on the same word lists:
    each listed word present counts once; more negative than positive words is negative, etc."""
    out = []
    for text in texts:
        low = text.lower()
        neg = sum(w in low for w in negative)
        pos = sum(w in low for w in positive)
        out.append("negative" if neg > pos else "positive" if pos > neg else "neutral")
    return out
