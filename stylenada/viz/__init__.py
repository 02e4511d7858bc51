"""Visualisation: training curves, layer heatmap, CLIP directions, videos and the self-contained HTML report."""

from .curves import (
    load_records,
    plot_lambdas,
    plot_layer_heatmap,
    plot_losses,
    plot_overview,
    plot_source_text,
    plot_training_curves,
)
from .directions import DirectionData, cosine_over_training, direction_data, plot_directions
from .report import write_report
from .video import cross_model_video, latent_walk_video

__all__ = ["DirectionData", "cosine_over_training", "cross_model_video", "direction_data", "latent_walk_video",
           "load_records", "plot_directions", "plot_lambdas", "plot_layer_heatmap", "plot_losses", "plot_overview",
           "plot_source_text", "plot_training_curves", "write_report"]
