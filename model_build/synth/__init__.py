"""Synthetic cohorts with a known Bayes oracle (`sarco synth`); see docs/synthetic-cohort.md.

latent (the class-conditional Gaussian and its oracle), cohorts (sizes), tabular (clinical and
lab columns), reference (measurements that reproduce the label), media (images and videos from
the image latents, drawn by render) and generate (the whole cohort folder).
"""
