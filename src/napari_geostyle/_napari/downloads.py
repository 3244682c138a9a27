"""Downloads the widgets start, in napari thread workers (the texture network's weights)."""

from __future__ import annotations

from collections.abc import Callable


def start_vgg19_download(on_done: Callable, on_failed: Callable, on_finished: Callable):
    """Download the ImageNet VGG-19 weights in a started thread worker, and return it.

    ``on_done(path)``, ``on_failed(error)`` and then ``on_finished()`` run on the main thread.
    """
    from napari.qt.threading import create_worker

    from ..core.weights import download_vgg19_weights

    worker = create_worker(download_vgg19_weights, False, _start_thread=False, _ignore_errors=True)
    worker.returned.connect(on_done)
    worker.errored.connect(on_failed)
    worker.finished.connect(on_finished)
    worker.start()
    return worker
