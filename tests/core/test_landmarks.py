"""BigWarp landmark CSV reading and writing."""

import numpy as np
import pytest

from napari_geostyle.core.landmarks import read_bigwarp_csv, write_bigwarp_csv

# As BigWarp (Fiji) writes it: quoted, no header; moving x/y then target x/y; x is the column.
BIGWARP_FILE = """\
"Pt-0","true","10.5","20.0","12.0","22.5"
"Pt-1","true","50.0","15.25","48.0","17.0"
"Pt-2","false","1.0","1.0","Infinity","Infinity"
"Pt-3","true","30.0","60.0","33.0","58.0"
"""


def test_reads_bigwarp_file_as_row_col_and_skips_inactive(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text(BIGWARP_FILE)
    content, target = read_bigwarp_csv(path)
    np.testing.assert_array_equal(content, [[20.0, 10.5], [15.25, 50.0], [60.0, 30.0]])
    np.testing.assert_array_equal(target, [[22.5, 12.0], [17.0, 48.0], [58.0, 33.0]])
    assert content.dtype == np.float64


def test_accepts_a_header_line(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text("name,active,moving x,moving y,target x,target y\n" + BIGWARP_FILE)
    content, _ = read_bigwarp_csv(path)
    assert len(content) == 3


def test_write_then_read_is_exact_and_bigwarp_shaped(tmp_path):
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 500, (5, 2))
    target = content + rng.normal(0, 3, (5, 2))
    path = tmp_path / "out.csv"
    write_bigwarp_csv(path, content, target)
    first = path.read_text().splitlines()[0]
    assert first.startswith('"Pt-0","true","') and first.count('"') == 12
    assert float(first.split(",")[2].strip('"')) == content[0, 1]  # moving x is the column
    back_content, back_target = read_bigwarp_csv(path)
    np.testing.assert_array_equal(back_content, content)
    np.testing.assert_array_equal(back_target, target)
    write_bigwarp_csv(path, content, target, names=list("abcde"))
    assert path.read_text().startswith('"a","true"')


@pytest.mark.parametrize(
    "text, message",
    [
        ('"Pt-0","true","1","2","3"\n', "6 columns"),
        ('"Pt-0","true","1","2","3","4","5","6"\n', "3D"),
        ('"Pt-0","true","1","2","3","4"\n"Pt-1","true","x","2","3","4"\n', "line 2.*not a number"),
        ('"Pt-0","true","1","2","3","4"\n"Pt-1","maybe","1","2","3","4"\n', "true or false"),
        ('"Pt-0","false","1","2","3","4"\n', "no active"),
        ("", "no active"),
        (
            '"Pt-0","true","1","2","3","4"\n"Pt-1","true","1","2","Infinity","4"\n',
            "line 2: target x is 'Infinity'",
        ),
        (
            '"Pt-0","ture","1","2","3","4"\n"Pt-1","true","1","2","3","4"\n',
            "line 1: active must be true or false; got 'ture'",
        ),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_bigwarp_csv(path)


def test_missing_file_and_bad_write_arguments(tmp_path):
    with pytest.raises(ValueError, match="no landmark file"):
        read_bigwarp_csv(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="points but"):
        write_bigwarp_csv(tmp_path / "x.csv", np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="names"):
        write_bigwarp_csv(tmp_path / "x.csv", np.zeros((3, 2)), np.zeros((3, 2)), names=["a"])
    with pytest.raises(ValueError, match="does not exist"):
        write_bigwarp_csv(tmp_path / "no" / "x.csv", np.zeros((3, 2)), np.zeros((3, 2)))


def test_header_is_only_a_row_whose_coordinates_are_not_numbers(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text('"name","active","mx","my","tx","ty"\n' + BIGWARP_FILE)
    assert len(read_bigwarp_csv(path)[0]) == 3
    path.write_text('"Pt-0","TRUE","1","2","3","4"\n' + BIGWARP_FILE)  # data, not a header
    assert len(read_bigwarp_csv(path)[0]) == 4


def test_unreadable_file_is_a_value_error_with_the_reason(tmp_path, monkeypatch):
    path = tmp_path / "landmarks.csv"
    path.write_text(BIGWARP_FILE)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "open", refuse)
    with pytest.raises(ValueError, match="cannot read the landmark file .*Permission denied"):
        read_bigwarp_csv(path)
