"""Answer layout from token ids (span offsets, phrase markers), GCG/PSG alignment, rendering."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tokenizers import AddedToken

from masktok.mllm.answer import layout_answer, trim_generated
from masktok.mllm.chat import history_text
from masktok.mllm.grounding import align_phrases, parse_scene_graph, split_relation
from masktok.masks.render import mask_colors, render_masks
from masktok.mllm.vocabulary import mask_token_ids, mask_token_order
from masktok.words import samtok_vocabulary
from mllm_fixtures import box_mask, build_tiny_tokenizer

VOCAB = samtok_vocabulary()


@pytest.fixture(scope="module")
def tokenizer():
    tok = build_tiny_tokenizer()
    tok.add_tokens([AddedToken(t, normalized=False, special=False)
                    for t in mask_token_order(VOCAB)])
    return tok


def word(c0, c1):
    return VOCAB.start_token + VOCAB.code_token(0, c0) + VOCAB.code_token(1, c1) + VOCAB.end_token


def lay(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return layout_answer(ids, tokenizer, VOCAB, mask_token_ids(tokenizer, VOCAB))


def test_span_offsets_and_special_tokens(tokenizer):
    text = f"a dog {word(11, 47)} and é {word(3, 4)}<|im_start|>!"
    layout = lay(tokenizer, text)
    assert layout.text == f"a dog {word(11, 47)} and é {word(3, 4)}!"  # special tokens dropped
    assert [tuple(s.span.codes) for s in layout.spans] == [(11, 47), (3, 4)]
    for located, expected in zip(layout.spans, [word(11, 47), word(3, 4)]):
        assert layout.text[located.char_start:located.char_end] == expected
        assert located.span.end - located.span.start == 4
    assert trim_generated([5, 6, 9, 7, 9], eos_ids=[9]) == [5, 6]
    assert trim_generated([0, 5, 0, 6], pad_id=0) == [5, 6]


def test_phrases_gcg_alignment_and_history(tokenizer):
    text = (f"<|object_ref_start|>the man<|object_ref_end|>{word(1, 2)} holds "
            f"<|object_ref_start|>two cups<|object_ref_end|> {word(3, 4)} , and {word(5, 6)} "
            f"near <|object_ref_start|>a table<|object_ref_end|> on {word(7, 8)}. "
            f"<|object_ref_start|>open")
    layout = lay(tokenizer, text)
    assert [p.text for p in layout.phrases] == ["the man", "two cups", "a table", "open"]
    assert [p.closed for p in layout.phrases] == [True, True, True, False]
    grounded = align_phrases(layout)
    assert [g.span_indices for g in grounded] == [(0,), (1, 2), (), ()]
    assert layout.text[grounded[1].char_start:grounded[1].char_end] == "two cups"
    assert history_text(layout) == text


def test_scene_graph_lines(tokenizer):
    text = (f"person{word(163, 227)} standing on river{word(52, 66)}\n"
            f"potted plant{word(31, 43)} on back of couch{word(44, 51)}\n"
            f"cat{word(1, 1)} gazing at dog{word(2, 2)}\njust text {word(9, 9)}")
    relations = parse_scene_graph(lay(tokenizer, text))
    assert [(r.subject, r.relation, r.object, r.subject_span, r.object_span, r.status)
            for r in relations] == [
        ("person", "standing on", "river", 0, 1, "ok"),
        ("potted plant", "on back of", "couch", 2, 3, "ok"),
        ("cat", None, "gazing at dog", 4, 5, "unknown_predicate"),
    ]
    assert split_relation("  in   front of   tree-merged ") == ("in front of", "tree-merged")
    assert split_relation("on") == ("on", "")


def test_render_masks():
    image = Image.new("RGB", (40, 30), (10, 20, 30))
    masks = np.stack([box_mask(30, 40, (2, 2, 10, 10)), box_mask(30, 40, (20, 5, 35, 25)),
                      np.zeros((30, 40), dtype=bool)])
    out = np.asarray(render_masks(image, masks, draw_boxes=False))
    colors = mask_colors(3)
    assert len(set(colors)) == 3
    expected = np.round(0.5 * np.array([10, 20, 30]) + 0.5 * np.array(colors[0]))
    np.testing.assert_array_equal(out[5, 5], expected)
    np.testing.assert_array_equal(out[0, 39], [10, 20, 30])
    boxed = np.asarray(render_masks(image, masks))
    np.testing.assert_array_equal(boxed[25, 28], colors[1])  # bottom edge of box 1
    with pytest.raises(ValueError, match="size"):
        render_masks(image, masks[:, :20])
    with pytest.raises(ValueError, match="alpha"):
        render_masks(image, masks, alpha=2.0)
