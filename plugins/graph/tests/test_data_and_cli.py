"""SMILES input end to end through the CLI, bad input exits 2, the offline data is real."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from gradleak import DataError
from gradleak.cli import cli as main


def test_cli_attacks_a_smiles_file_and_writes_plain_json(smiles_file, tmp_path):
    path = smiles_file(["smiles", "NC(=S)NN 1", "# a comment", "CC(=O)O"])
    out = tmp_path / "out"
    res = CliRunner().invoke(main, prog_name="gradleak", args=[
        "run", "--case", "graph/gcn-molecules", "--attack", "grain", "--data", str(path), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["metrics"]["exact"] == 1.0 and len(doc["per_sample"]) == 2
    truth, recon = (json.loads((out / f"{s}.json").read_text()) for s in ("truth", "recon"))
    assert len(truth) == len(recon) == 2
    assert sorted(map(tuple, truth[0]["edges"])) == [(0, 1), (1, 2), (1, 3), (3, 4)]  # N-C(=S)-N-N
    assert sorted(map(tuple, recon[0]["x"])) == sorted(map(tuple, truth[0]["x"]))
    assert (out / "graphs.png").stat().st_size > 1000


def test_unparsable_smiles_exits_2_naming_line_and_string(smiles_file):
    path = smiles_file(["CCO", "", "C1CC(", "CCN"])
    res = CliRunner().invoke(main, prog_name="gradleak", args=[
        "run", "--case", "graph/gcn-molecules", "--attack", "grain", "--data", str(path)])
    assert res.exit_code == 2
    assert "line 3" in res.stderr and "'C1CC('" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_pyg_dataset_folder_exits_2(tmp_path):
    res = CliRunner().invoke(main, prog_name="gradleak", args=[
        "run", "--case", "graph/gcn-citation", "--attack", "grain", "--data", str(tmp_path / "no-such-citeseer")])
    assert res.exit_code == 2 and "no-such-citeseer" in res.stderr


def test_a_file_given_as_pyg_dataset_root_is_refused(tmp_path):
    from gradleak_graph.data import dataset_root

    f = tmp_path / "x.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="PyG dataset folder"):
        dataset_root(f)


def test_builtin_molecules_are_real_connected_and_small(molecules):
    import networkx as nx

    from gradleak_graph.features import CHEMICAL
    from gradleak_graph.modality import to_networkx

    assert len(molecules) == 12 and molecules.labels.dtype == torch.long
    assert molecules.data[0].smiles == "CC1=CC(=O)C=CC1=O"  # line 2 of RDKit's NCI/first_5K.smi
    for g in molecules.data:
        assert 2 <= g.num_nodes <= 25 and nx.is_connected(to_networkx(g))
        assert torch.equal(CHEMICAL.degree(g.x), torch.bincount(g.edge_index[0], minlength=g.num_nodes))


def test_citation_like_graphs_are_social_subgraphs_with_degree_features():
    from gradleak_graph.data import CITATION, citation_like

    b = citation_like(count=6)
    assert len(b) == 6
    for g in b.data:
        assert g.x.shape[1] == CITATION.dim
        assert torch.equal(CITATION.degree(g.x), torch.bincount(g.edge_index[0], minlength=g.num_nodes))
