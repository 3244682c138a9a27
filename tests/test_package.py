import subprocess
import sys


def test_import_is_cheap():
    code = (
        "import sys, napari_geostyle as gs; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert not any(m.startswith(('qtpy', 'PyQt5', 'napari.')) for m in sys.modules), 'Qt imported'; "
        "assert callable(gs.fit_tps)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-geostyle")
    assert manifest.display_name == "GeoStyle"


def test_unknown_public_name_is_an_attribute_error():
    import napari_geostyle

    try:
        _ = napari_geostyle.does_not_exist
    except AttributeError as error:
        assert "does_not_exist" in str(error)
    else:
        raise AssertionError("expected AttributeError")
