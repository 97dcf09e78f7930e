"""The medical plugin: real patches, DICOM and MedMNIST loaders, DP-SGD, latent perturbation, attacker accuracy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import gradleak
from gradleak import DataError
from gradleak_medical.loaders import load_dicom_folder, load_medmnist
from gradleak_medical.patches import class_names, medical_patches, public_medical_patches


def test_patches_are_real_tiles_with_source_labels_and_public_ones_share_no_pixel():
    private, public = medical_patches(), public_medical_patches()
    assert {"ct", "mr", "ultrasound", "histology", "fundus"} <= set(class_names())
    assert private.data.shape[1:] == (3, 32, 32) and 0 <= private.data.min() and private.data.max() <= 1
    assert set(private.labels.tolist()) == set(range(len(class_names())))
    same = (public.data[:, None] - private.data[None]).abs().flatten(2).amax(2) < 1e-6
    assert not bool(same.any())
    assert float(private.data.reshape(len(private), -1).std(1).min()) >= 0.04  # no flat background tiles


def _ct_file():
    from pydicom.data import get_testdata_file

    return get_testdata_file("CT_small.dcm")


def test_dicom_folder_labels_from_subfolders_and_no_patient_data_in_results(tmp_path):
    import pydicom

    data = tmp_path / "dicom"
    for cls in ("a", "b"):
        (data / cls).mkdir(parents=True)
        ds = pydicom.dcmread(_ct_file())
        ds.PatientName = "Secret^Patient"
        ds.PatientID = "PID-123456"
        ds.save_as(data / cls / "slice.dcm")
    batch = load_dicom_folder(data, (3, 32, 32), class_names())
    assert batch.labels.tolist() == [0, 1] and batch.data.shape == (2, 3, 32, 32)
    assert 0 < float(batch.data.std())
    out = tmp_path / "out"
    result = gradleak.run("medical/cnn-patches", "idlg", data=data, budget=2, sets={"restarts": 1}, device="cpu",
                          out=out)
    written = json.dumps(result.as_json()) + "".join(p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file())
    assert "Secret" not in written and "PID-123456" not in written


def test_a_compressed_dicom_without_its_decoder_names_file_and_package(tmp_path):
    import pydicom
    from pydicom.uid import JPEGLSLossless

    ds = pydicom.dcmread(_ct_file())
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not a real codestream \xff\xd9"])
    ds["PixelData"].is_undefined_length = True
    (tmp_path / "d").mkdir()
    ds.save_as(tmp_path / "d" / "bad.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match=r"bad\.dcm.*(pylibjpeg|decoder|handler)"):
        load_dicom_folder(tmp_path / "d", (3, 32, 32), class_names())


def test_medmnist_npz_in_the_official_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "bloodmnist.npz"
    np.savez(path, train_images=rng.integers(0, 255, (6, 28, 28, 3), dtype=np.uint8),
             train_labels=np.array([[0], [1], [2], [3], [4], [5]]), val_images=np.zeros((1, 28, 28, 3), np.uint8),
             val_labels=np.zeros((1, 1), int), test_images=rng.integers(0, 255, (4, 28, 28, 3), dtype=np.uint8),
             test_labels=np.array([[7], [6], [5], [4]]))
    batch = load_medmnist(path, (3, 32, 32), "test")
    assert batch.data.shape == (4, 3, 32, 32) and batch.labels.tolist() == [7, 6, 5, 4]
    chest = tmp_path / "chestmnist.npz"
    multi = np.zeros((3, 14), int)
    multi[1, 4] = multi[2, [2, 9]] = 1
    np.savez(chest, test_images=rng.integers(0, 255, (3, 28, 28), dtype=np.uint8), test_labels=multi)
    assert load_medmnist(chest, (3, 32, 32), "test").labels.tolist() == [0, 4, 2]
    result = gradleak.run("medical/bloodmnist", "idlg", data=path, budget=2, sets={"restarts": 1}, device="cpu")
    assert len(result.per_sample) == 4
    with pytest.raises(DataError, match="missing arrays"):
        load_medmnist(chest, (3, 32, 32), "train")


def test_bloodmnist_offline_says_where_to_get_the_data(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"bloodmnist\.npz.*--data"):
        gradleak.run("medical/bloodmnist", "idlg", budget=1, device="cpu")


def test_dp_sgd_clips_each_example_and_adds_calibrated_noise():
    from gradleak_medical.dpsgd import DPSGD, DPSGDConfig

    g = {"w": torch.tensor([[3.0, 4.0], [0.3, 0.4]]), "b": torch.zeros(2, 1)}  # per-example norms 5 and 0.5
    gen = torch.Generator().manual_seed(0)
    out = DPSGD(DPSGDConfig(clip=1.0, sigma=0.0)).apply_step(g, gen)
    assert torch.allclose(out["w"], (torch.tensor([0.6, 0.8]) + torch.tensor([0.3, 0.4])) / 2)
    noisy = [DPSGD(DPSGDConfig(clip=1.0, sigma=2.0)).apply_step(g, gen)["b"] for _ in range(2000)]
    assert float(torch.stack(noisy).std()) == pytest.approx(2.0 * 1.0 / 2, rel=0.1)
    result = gradleak.run("medical/cnn-patches", "idlg", defenses=["dp-sgd:sigma=1"], budget=2,
                          sets={"restarts": 1}, device="cpu")
    eps = result.utility["dp-sgd.epsilon"]
    assert 0 < eps < float("inf")


def test_latent_perturbation_trained_in_the_federation_keeps_accuracy_and_lowers_reconstruction_quality():
    # The paper's protocol: the model trains with the defense in the loop (300 FedSGD rounds of 8 patches),
    # then single-patch updates of the trained model are attacked (IG, 400 steps, labels known, same start).
    # Measured: accuracy 0.62 -> 0.66 and PSNR 15.1 -> 11.3 dB at the default privacy=10.
    from gradleak.device import generator
    from gradleak.registry import registry
    from gradleak.runner import plan
    from gradleak_medical.federation import attack_update, train_fedsgd
    from gradleak_medical.latent import PerturbedClassifier, accuracy

    cpu = torch.device("cpu")
    psnr = registry().get("metric", "psnr", modality="image")()
    acc, quality = {}, {}
    for spec in ("none", "latent-perturbation"):
        p = plan("medical/cnn-patches", "inverting-gradients", [spec], {"labels": "known", "restarts": 1}, cpu, 400)
        gen = generator(cpu, 0)
        model = p.case.build_model(gen).eval()
        data = p.case.load_data(None)
        train_fedsgd(p, model, data, rounds=300, batch_size=8, lr=2e-3, generator=gen, seed=0)
        sigma = getattr(p.defenses[0], "sigma", None)
        torch.manual_seed(0)  # the latent noise of the accuracy pass
        acc[spec] = accuracy(PerturbedClassifier(model, sigma) if sigma is not None else model, p.case.public_data())
        picks = [int((data.labels == c).nonzero()[0]) for c in range(3)]
        values = []
        for i, index in enumerate(picks):
            truth = p.modality.select(data, torch.tensor([index]))
            _, rec = attack_update(p, model, truth, gen, 400, attack_seed=1000 + i)
            values.append(float(psnr(rec.batch, truth).mean()))
        quality[spec] = sum(values) / len(values)
    assert acc["latent-perturbation"] >= acc["none"] - 0.05, acc
    assert quality["latent-perturbation"] <= quality["none"] - 2.0, quality


def test_latent_perturbation_relearns_sigma_on_every_model_and_learn_once_keeps_it():
    from gradleak.device import generator
    from gradleak.fl.client import client_update
    from gradleak.runner import plan

    cpu = torch.device("cpu")

    def rounds(spec: str, n: int) -> list[torch.Tensor]:
        p = plan("medical/cnn-patches", "inverting-gradients", [spec], {"labels": "known"}, cpu, 1)
        gen = generator(cpu, 0)
        model = p.case.build_model(gen)
        part = p.modality.select(p.case.load_data(None), torch.arange(4))
        out = []
        for _ in range(n):
            client_update(model, p.case, p.modality, part, p.defenses, gen)
            out.append(p.defenses[0].sigma.clone())
            with torch.no_grad():  # the server moves the encoder between rounds
                model.encoder[-2].weight.mul_(0.5)
        return out

    joint = rounds("latent-perturbation:steps=10,round_steps=10,privacy=100", 3)
    once = rounds("latent-perturbation:steps=10,round_steps=0,privacy=100", 3)
    # The first model gets the same minimax from the same start in both variants.
    assert torch.allclose(joint[0], once[0])
    assert all(torch.equal(once[0], s) for s in once[1:])
    # Joint training continues on every later model: sigma moves again on each one.
    assert not torch.allclose(joint[1], joint[0]) and not torch.allclose(joint[2], joint[1])
