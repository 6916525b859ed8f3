"""File names of a model folder and an artifact folder, defined once."""

MANIFEST = "manifest.json"
PROMPT_SPEC = "prompt.yaml"
PROMPT_TEXT = "prompt.txt"
LABELS = "labels.json"
METRICS = "metrics.json"
TRAIN_CONFIG = "train_config.yaml"
EXPORT_CONFIG = "export_config.yaml"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
QUANTIZATION_CONFIG = "ort_config.json"
PARITY = "parity.json"

# The word-shape embedding of a model folder trained with casing (the HF model's weights do not hold it).
CASING_WEIGHTS = "casing.safetensors"

# A types artifact's prompt encoder (prompt ids + type mask -> keys, values, type keys), fp32 for every variant.
PROMPT_ENCODER = "prompt_encoder.onnx"

# ONNX variants of an artifact and their file names.
VARIANT_FILES = {
    "fp32": "model.onnx",
    "optimized": "model_optimized.onnx",
    "int8": "model_quantized.onnx",
    "fp16": "model_fp16.onnx",
}
# Built for the CPU: dynamic int8 has no CUDA kernels (ORT would run it node by node on the CPU
# behind the CUDA provider, with copies). Asked for by name with device auto, it runs on the CPU.
CPU_ONLY_VARIANTS = frozenset({"int8"})

# Written by `promptbert train`; its presence is how we recognise a model folder.
MODEL_FOLDER_KIND = "promptbert-model"
ARTIFACT_KIND = "promptbert-artifact"

# The raw-text word splitter (data.split_words): recorded in a model's manifest at training and
# reported by the service's /metadata for the one it runs. A mismatch is not refused: models trained
# on CoNLL files never ran the splitter (their words come split), and its job is to split raw text as
# those files were. v2: CoNLL-style initials, abbreviations, clitics and combining marks.
WORD_SPLITTER = "regex-v2"

# How the prompt head attends (recorded in the manifest's "encoding"):
# "isolated" -- the head sees only itself, so its keys/values are cached and the model runs on the text alone;
# "joint" -- classic pair encoding, every token sees every token (manifests without the key are joint).
PROMPT_ATTENTION = ("isolated", "joint")
