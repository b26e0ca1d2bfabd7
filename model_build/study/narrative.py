"""The report's words: summary, methods in brief and limitations, written from results.json.

Every number in a sentence is read from results.json (or counted in the cohort); nothing is
typed in. The sentences are plain text: the page escapes them, the model card uses them as
Markdown.
"""

from __future__ import annotations

from model_build.cohort import Cohort
from model_build.study.formatting import (
    CLASS_NAMES,
    MISSING,
    MODALITY_NAMES,
    format_estimate,
    format_interval,
    format_number,
    format_percent,
    format_proportion,
    p_phrase,
)
from model_build.study.inputs import DEVELOPMENT, complete_cases, fused_model

MIN_CALIBRATION_EVENTS = 100  # of each outcome, to validate calibration (Vergouwe et al., 2005)
LABEL_DEFINITIONS = {"awgs2019": "the Asian Working Group for Sarcopenia 2019 criteria (AWGS 2019)",
                     "ewgsop2": "the revised European consensus (EWGSOP2)"}


def _auc(results: dict, model: str, cohort: str) -> str:
    metrics = results["models"][model][cohort]
    return format_estimate(metrics["auc"], metrics["auc_ci"])


def _names(results: dict, model: str) -> str:
    return " + ".join(MODALITY_NAMES[m] for m in results["models"][model]["modalities"])


def find_comparison(comparisons: list[dict], a: str, b: str, cohort: str) -> tuple[float, float] | None:
    """(difference a - b, P) of the paired test between two models on a cohort, in either order."""
    for entry in comparisons:
        if entry["cohort"] == cohort and {entry["a"], entry["b"]} == {a, b}:
            return (entry["difference"] if entry["a"] == a else -entry["difference"]), entry["p"]
    return None


def best_single(results: dict) -> list[str]:
    """Models with one data type, best development AUC first."""
    models = results["models"]
    single = [name for name in models if len(models[name]["modalities"]) == 1]
    return sorted(single, key=lambda name: -(models[name][DEVELOPMENT]["auc"] or 0.0))


def summary(results: dict) -> list[str]:
    """Short paragraphs: best data type, fusion, contributions, selection, other cohorts, INT8, oracle."""
    evaluation = results["evaluation"][DEVELOPMENT]
    paragraphs = []
    ranked = best_single(results)
    if len(ranked) > 1:
        best = ranked[0]
        others = "; ".join(f"{_names(results, m)} ({m}) {_auc(results, m, DEVELOPMENT)}" for m in ranked[1:])
        paragraphs.append(f"Of the single data types, {_names(results, best)} ({best}) discriminated best on "
                          f"development ({evaluation}): AUC {_auc(results, best, DEVELOPMENT)}; then {others}.")
    elif ranked:
        paragraphs.append(f"One data type was modelled alone: {_names(results, ranked[0])} ({ranked[0]}), AUC "
                          f"{_auc(results, ranked[0], DEVELOPMENT)} on development ({evaluation}).")
    fused = fused_model(results)
    if fused and ranked:
        paragraphs.append(_fusion_sentence(results, fused, ranked[0]))
    if results.get("contributions"):
        paragraphs.append(_contribution_sentence(results, fused))
    selection = results["selection"]
    paragraphs.append(f"Selected model: {selection['selected']}. {selection['reason'].rstrip('.')}.")
    selected = results["selected_model"]
    for cohort in results["cohorts"]:
        if cohort != DEVELOPMENT:
            paragraphs.append(_cohort_sentence(results, cohort, selected, fused))
    paragraphs.append(int8_sentence(results))
    if results.get("oracle", {}).get(DEVELOPMENT):
        oracle = results["oracle"][DEVELOPMENT]
        parts = ", ".join(f"{key} {format_number(value)}" for key, value in oracle.items() if key != "all")
        paragraphs.append(f"These data are synthetic. The best AUC any model could reach on development (the Bayes "
                          f"oracle from the generating variables) was {format_number(oracle.get('all'))} with every "
                          f"data type" + (f"; by data type: {parts}." if parts else "."))
    return paragraphs


def quick_banner(results: dict) -> str | None:
    """The caution a quick run opens with, before any number is read (None for a full run)."""
    if not results["options"].get("quick"):
        return None
    return ("Quick run (--quick): a smoke test of the pipeline, not a study. The models were trained for a few "
            "epochs only and the cohorts are small, so the AUCs, P values and the selected model below are chance: "
            "an AUC of 0.000 only means that every case happened to score below every non-case. Run the study "
            "without --quick for numbers that estimate anything.")


def calibration_caution(results: dict) -> str | None:
    """Why the calibration slopes and intercepts are imprecise, for cohorts with fewer than
    100 events or 100 non-events (Vergouwe et al., J Clin Epidemiol 2005); None when none has."""
    counts = results["models"][results["selected_model"]]
    small = [(cohort, counts[cohort]["n_positive"], counts[cohort]["n"] - counts[cohort]["n_positive"])
             for cohort in results["cohorts"]
             if min(counts[cohort]["n_positive"], counts[cohort]["n"] - counts[cohort]["n_positive"])
             < MIN_CALIBRATION_EVENTS]
    if not small:
        return None
    where = "; ".join(f"{cohort}: {events} with sarcopenia, {others} without" for cohort, events, others in small)
    return (f"Fewer than {MIN_CALIBRATION_EVENTS} events or non-events ({where}). Validating calibration needs at "
            f"least {MIN_CALIBRATION_EVENTS} of each (Vergouwe et al., 2005); with fewer, the calibration intercepts "
            "and slopes are imprecise and their Wald intervals only approximate.")


def _fusion_sentence(results: dict, fused: str, best: str) -> str:
    text = (f"Fusing {_names(results, fused)} ({fused}) gave AUC {_auc(results, fused, DEVELOPMENT)}, against "
            f"{format_number(results['models'][best][DEVELOPMENT]['auc'])} for {best} alone")
    test = find_comparison(results["comparisons"], fused, best, DEVELOPMENT)
    if test is None:
        return text + " (no paired test between them was recorded)."
    difference, p = test
    alpha = results["options"]["alpha"]
    if p < alpha:
        verdict = "a significant gain" if difference > 0 else "a significant loss"
    else:
        verdict = "not a significant difference"
    return text + (f": a difference of {format_number(difference, signed=True)} (paired DeLong {p_phrase(p)}), "
                   f"{verdict} at alpha {alpha}.")


def _contribution_sentence(results: dict, fused: str | None) -> str:
    shares = results["contributions"]
    modalities = list(dict.fromkeys(m for by_class in shares.values() for m in by_class))
    parts = [f"{MODALITY_NAMES[m]} carried {format_percent(shares.get('sarcopenia', {}).get(m))} of the evidence for "
             f"sarcopenia and {format_percent(shares.get('non_sarcopenia', {}).get(m))} for no sarcopenia"
             for m in modalities]
    sentence = (f"In the multimodal model ({fused}), " + "; ".join(parts)
                + " (the paper's measure: mean share of the evidence for the participant's true class, development, "
                "out-of-fold).")
    return sentence + (" " + information_sentence(results, brief=True) if results.get("information") else "")


def information_sentence(results: dict, brief: bool = False) -> str:
    """Whether the evidence share and the Shapley share agree on development, and if not, why
    (``brief``: the pairs that disagree only, for the summary; the section gives the reasons)."""
    block = results["information"]
    entry = block["cohorts"].get(DEVELOPMENT)
    if entry is None:
        return "The information measures need both classes on development; they are given per cohort below."
    limit = format_number(block["disagreement_threshold"], 2)
    if not entry["disagreements"]:
        return (f"On development the evidence shares agree with the Shapley shares (within {limit} for every data "
                "type and class).")
    if brief:
        pairs = [f"{MODALITY_NAMES[d['modality']]} for {CLASS_NAMES[d['class']]} (evidence share "
                 f"{format_number(d['evidence_share'])}, {_shapley_part(d)})" for d in entry["disagreements"]]
        return (f"On development the two measures disagree by more than {limit} for " + "; ".join(pairs)
                + ": see what each data type contributes, below.")
    parts = [f"{MODALITY_NAMES[d['modality']]} for {CLASS_NAMES[d['class']]}: evidence share "
             f"{format_number(d['evidence_share'])}, {_shapley_part(d)}; its head "
             f"emitted more evidence for that class than against it for "
             f"{format_percent(d['evidence_for_more_than_against'])} of those participants"
             for d in entry["disagreements"]]
    return (f"On development the two measures disagree by more than {limit} for " + "; ".join(parts) + ". The "
            "evidence share counts the evidence a head emits for the class, whether or not it moves the fused "
            "decision: a head that emits evidence mostly for one class (as a frozen image head can) gets a large "
            "share of that class and a small share of the other, whatever it adds. The Shapley values and the AUC "
            "drops measure what a data type changes in the fused log-odds and in the ranking.")


def _shapley_part(disagreement: dict) -> str:
    """``Shapley share 0.512``, or for a data type that moves its class away on average (no share:
    :func:`model_build.study.information._disagreements` lists only those) its mean Shapley value
    and what the sign means."""
    if disagreement["shapley_share"] is not None:
        return f"Shapley share {format_number(disagreement['shapley_share'])}"
    mean = disagreement["shapley_mean"]
    return (f"Shapley value {format_number(mean, signed=True)} log-odds, no share: on average it moves these "
            "participants' fused log-odds away from their class (from the vacuous opinion, even odds), so its head "
            "leans towards the other class")


def _cohort_sentence(results: dict, cohort: str, selected: str, fused: str | None) -> str:
    metrics = results["models"][selected][cohort]
    if metrics.get("note"):
        return (f"On {cohort} ({results['evaluation'][cohort]}; n={metrics['n']}, {metrics['n_positive']} with "
                f"sarcopenia) the selected model could not be scored: {metrics['note']}.")
    text = (f"On {cohort} ({results['evaluation'][cohort]}; n={metrics['n']}, {metrics['n_positive']} with "
            f"sarcopenia) the selected model reached AUC {_auc(results, selected, cohort)}, sensitivity "
            f"{_rate(metrics.get('sensitivity'), metrics['n_positive'])} and specificity "
            f"{_rate(metrics.get('specificity'), metrics['n'] - metrics['n_positive'])} at the threshold frozen on "
            f"development ({format_number(metrics.get('threshold'))})")
    if metrics.get("oracle_auc") is not None:
        text += f"; oracle AUC {format_number(metrics['oracle_auc'])}"
    if fused and fused != selected:
        text += f". The multimodal model ({fused}) reached AUC {_auc(results, fused, cohort)}"
    return text + "."


def _rate(rate: float | None, total: int) -> str:
    """Sensitivity or specificity with its Wilson CI. results.json keeps the rate; its count is
    rate x total exactly (a count over that total), so nothing is recomputed from predictions."""
    return MISSING if rate is None else format_proportion(round(rate * total), total)


def int8_sentence(results: dict) -> str:
    int8 = results["int8"]
    if int8 is None:
        return f"INT8 check for the device: not run ({results['int8_skipped']})."
    limits = int8["limits"]
    checks = "; ".join(f"{name}: AUC {format_number(c['auc_float'])} float vs {format_number(c['auc_int8'])} INT8 "
                       f"({p_phrase(c['p'])}), {format_percent(c['flip_rate'], 2)} of decisions flipped"
                       for name, c in int8["cohorts"].items())
    verdict = "accepted" if int8["accepted"] else "rejected (the device must not run it)"
    failures = int8.get("failures") or []
    confidence = limits.get("flip_confidence")
    flip_rule = (f"a flip rate not significantly above {format_percent(limits['max_flip_rate'], 2)} "
                 f"(one-sided exact binomial test at {format_percent(confidence, 0)})" if confidence is not None
                 else f"at most {format_percent(limits['max_flip_rate'], 2)} of decisions flipped")
    note = f" ({int8['note']})" if int8.get("note") else ""
    return (f"INT8 check of the device's model, {int8.get('model', 'image')}{note} ({int8['target']}, "
            f"{int8['method']} calibration): {verdict}. {checks}. "
            f"Limits: AUC drop at most {format_number(limits['max_auc_drop'])}, {flip_rule}."
            + (f" Failed: {'; '.join(str(f) for f in failures)}." if failures else ""))


def methods(results: dict) -> list[str]:
    options = results["options"]
    items = ["Cohorts: " + "; ".join(f"{c}: {results['evaluation'][c]}" for c in results["cohorts"]) + ".",
             f"Development was evaluated by {options['folds']}-fold cross-validation: each participant's probability "
             "comes from the model of the fold that did not train on them (out-of-fold). Each model was then refit "
             "on all development participants and frozen before any other cohort was scored.",
             "Decision thresholds were set on development data only and applied unchanged to every other cohort: "
             "each model's rule was applied once to its pooled out-of-fold development predictions, each fold's "
             "Platt-scaled on that fold, with a 95% bootstrap interval of the cut; "
             "the 2x2 tables, sensitivity, specificity, positive and negative predictive values (PPV, NPV), accuracy "
             "and F1 are at that threshold (positive when the probability is at or above it). Proportions have 95% "
             "Wilson score intervals.",
             f"AUCs have 95% DeLong confidence intervals (none when every case is ranked above, or below, every "
             f"non-case: DeLong's variance is then zero); models were compared with the paired DeLong test on the "
             f"same participants (two-sided, alpha {options['alpha']}), on development within folds (fold-stratified: "
             f"out-of-fold scores of different fold models are never ranked against each other); Holm-adjusted P "
             f"values stand beside the raw ones, each cohort's comparisons one family.",
             "Calibration: observed against predicted risk in bins, Brier score, calibration intercept "
             "(calibration-in-the-large) and slope, each with a 95% Wald interval from the standard error of its "
             "logistic recalibration fit. Decision curves: net benefit (Vickers and Elkin, 2006)."]
    if fused_model(results) is not None:
        items.append(_fusion_method(options["fusion"]))
    if results.get("contributions"):
        items.append("A data type's contribution for a participant is its share of the evidence for the "
                     "participant's true class (its evidence divided by the sum over the data types present); the "
                     "study-level value is the mean over the participants of that class, with a 95% percentile "
                     "bootstrap interval.")
    items.append(f"Model selection on {results['selection']['cohort']}: {results['selection']['rule']}.")
    complete = complete_cases(results)
    if complete:
        items.append(f"Sensitivity analysis: the same models scored on complete cases only "
                     f"({complete['description']}).")
    if results["int8"] is not None:
        int8 = results["int8"]
        items.append(f"INT8: the image model was quantised for {int8['target']} ({int8['method']} calibration) and "
                     f"accepted only if its AUC dropped by at most {format_number(int8['limits']['max_auc_drop'])} and "
                     f"its share of changed decisions was not significantly above "
                     f"{format_percent(int8['limits']['max_flip_rate'], 2)} (report: {int8['report']}).")
    items.append(f"Random seed {options['seed']}.")
    return items


def _fusion_method(fusion: str) -> str:
    if fusion != "evidential":
        return f"Data types were fused by {fusion} fusion."
    return ("Data types were fused by evidential fusion (Han et al., ICLR 2021): each data type gives Dirichlet "
            "evidence for each class and the opinions are combined by the reduced Dempster rule. A data type missing "
            "altogether is a vacuous opinion, so a participant without, say, any lab value is still scored without "
            "imputing the table; a value missing within a data type is replaced by the training median and flagged "
            "by a missing indicator.")


def limitations(results: dict, cohort: Cohort) -> list[str]:
    items = []
    if results.get("oracle"):
        items.append("Synthetic data: the participants, images and values were generated (sarco synth), so these "
                     "numbers describe the pipeline, not patients. The oracle AUCs show the most any model could "
                     "reach on them.")
    if results["options"].get("quick"):
        items.append("Quick mode: training was shortened for a smoke test; the numbers are not for reporting.")
    selected = results["selected_model"]
    sizes = "; ".join(_precision(results, selected, c) for c in results["cohorts"])
    items.append(f"Cohort sizes limit precision (selected model {selected}): {sizes}.")
    prevalence = ", ".join(f"{c} {_prevalence(results, selected, c)}" for c in results["cohorts"])
    items.append(f"Thresholds were frozen on development; the share with sarcopenia differs between cohorts "
                 f"({prevalence}), and sensitivity and specificity at a fixed threshold depend on the case mix. "
                 "Check the threshold on local data before use.")
    items.append("Several comparisons were made on the same participants without adjusting P values.")
    if results.get("contributions"):
        items.append("Evidence shares are shares of the model's own evidence: they describe how the heads spend "
                     "their evidence, not what a data type adds (the Shapley values and AUC drops measure that), "
                     "nor the causal importance of a measurement.")
    centers = [m["n"] for model in results["models"].values() for c in results["cohorts"]
               for m in model[c].get("by_center", {}).values()]
    if centers:
        items.append(f"Per-center results rest on as few as {min(centers)} participants.")
    definition = cohort.schema.label_definition
    if definition in LABEL_DEFINITIONS:
        items.append(f"The outcome follows {LABEL_DEFINITIONS[definition]}, derived from the reference measurements "
                     "by `sarco label`; another definition changes who counts as a case.")
    else:
        items.append("The labels were given with the cohort (schema.yaml: label definition `given`); how they were "
                     "defined is not recorded here.")
    if results["int8"] is None:
        items.append(f"The device's INT8 model was not checked: {results['int8_skipped']}.")
    return items


def _precision(results: dict, model: str, cohort: str) -> str:
    metrics = results["models"][model][cohort]
    spread = (f"AUC 95% CI {format_interval(metrics['auc_ci'])}" if metrics["auc_ci"] is not None
              else "no AUC CI (too few of a class)")
    return f"{cohort} n={metrics['n']} ({metrics['n_positive']} with sarcopenia; {spread})"


def _prevalence(results: dict, model: str, cohort: str) -> str:
    metrics = results["models"][model][cohort]
    return format_percent(metrics["n_positive"] / metrics["n"]) if metrics["n"] else "n/a"
