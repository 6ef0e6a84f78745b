"""Media ingestion: list clips (folder, VGGSound CSV, AVE), decode 1-s windows with PyAV, prepare a dataset."""

from avdistill.data.ingest.decode import DecodeParams, MediaError, decode_windows
from avdistill.data.ingest.prepare import prepare_clips
from avdistill.data.ingest.sources import Clip, Skip, assign_splits, ave_clips, csv_clips, folder_clips

__all__ = ["Clip", "DecodeParams", "MediaError", "Skip", "assign_splits", "ave_clips", "csv_clips", "decode_windows",
           "folder_clips", "prepare_clips"]
