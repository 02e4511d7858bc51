"""Visualisation: training curves, layer heatmaps, CLIP directions, videos and the HTML run report."""

from .curves import load_records, plot_layer_heatmap, plot_losses, plot_training_curves
from .directions import direction_data, plot_directions
from .report import write_report
from .video import cross_model_video, latent_walk_video

__all__ = ["cross_model_video", "direction_data", "latent_walk_video", "load_records", "plot_directions",
           "plot_layer_heatmap", "plot_losses", "plot_training_curves", "write_report"]
