"""TaggingPipeline on a real (tiny) artifact: what reaches the model."""

from promptbert.runtime import Artifact


def test_texts_without_words_never_reach_the_model(tiny_artifact):
    pipe, _ = Artifact(tiny_artifact).pipeline("fp32", "cpu")
    calls: list[int] = []
    model = pipe.logits_fn

    def counting(arrays):
        calls.append(len(arrays["input_ids"]))
        return model(arrays)

    pipe.logits_fn = counting
    assert pipe.entities(["", "   ", "\n\t"]) == [[], [], []] and calls == []
    text = "John Smith visited Paris."
    alone = pipe.entities([text])
    calls.clear()
    assert pipe.entities(["", text, " "]) == [[], alone[0], []]
    assert calls == [1]  # one window: the text's
