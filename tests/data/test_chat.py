"""Chat `messages` data -> SFT rows through a chat format (HF jinja template or an r1jax Template)."""
import json

import pytest

from r1jax.data import chat
from r1jax.data.pipeline import make_sft_iterator

# The ChatML template of Qwen2.5-Instruct's tokenizer_config.json (default system prompt included).
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
    "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role != 'system' %}{{- '<|im_start|>' + message.role + '\\n' + "
    "message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

CONV = {'id': 'c1', 'messages': [
    {'role': 'system', 'content': 'Be brief.'},
    {'role': 'user', 'content': 'Hi!'},
    {'role': 'assistant', 'content': 'Hello.'},
    {'role': 'user', 'content': 'Capital of France?'},
    {'role': 'assistant', 'content': 'Paris.'}]}


@pytest.fixture
def hf_dir(tmp_path):
  (tmp_path / 'tokenizer_config.json').write_text(json.dumps(
      {'chat_template': QWEN_CHAT_TEMPLATE, 'eos_token': '<|im_end|>', 'bos_token': None}))
  return tmp_path


def test_hf_chat_template_one_example_per_assistant_turn(hf_dir):
  fmt = chat.ChatFormat.from_pretrained(hf_dir)
  rows = chat.chat_sft_rows([CONV], fmt)
  assert [(r['id'], r['turn']) for r in rows] == [('c1', 2), ('c1', 4)]
  assert rows[0]['prompt'] == ('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n'
                               '<|im_start|>assistant\n')
  assert rows[0]['completion'] == 'Hello.<|im_end|>\n'
  assert rows[1]['prompt'].endswith('<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n')
  assert rows[1]['prompt'].startswith(rows[0]['prompt'] + rows[0]['completion'])
  assert rows[1]['completion'] == 'Paris.<|im_end|>\n'
  last = chat.chat_sft_rows([CONV], fmt, turns='last')
  assert last == rows[1:]
  # no system message: the template's default one
  rows = chat.chat_sft_rows([{'messages': CONV['messages'][1:3]}], fmt)
  assert rows[0]['prompt'].startswith('<|im_start|>system\nYou are Qwen')


def test_r1jax_template_renders_turn_by_turn():
  fmt = chat.ChatFormat.from_template('qwen2.5')
  rows = chat.chat_sft_rows([CONV], fmt)
  assert rows[0]['prompt'] == ('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n'
                               '<|im_start|>assistant\n')
  assert rows[0]['completion'] == 'Hello.<|im_end|>'
  assert rows[1]['prompt'].startswith(rows[0]['prompt'] + 'Hello.<|im_end|>')
  assert 'system' not in rows[1]['prompt'][len(rows[0]['prompt']):]     # the system block only once


@pytest.mark.parametrize('bad', [None, [], [{'role': 'bot', 'content': 'x'}], [{'role': 'user'}], 'hello'])
def test_bad_messages_are_clear_errors(bad):
  with pytest.raises(ValueError, match='row 0'):
    chat.chat_sft_rows([{'messages': bad}], chat.ChatFormat.from_template('qwen2.5'))


def test_jsonl_and_parquet_sources_feed_the_sft_pipeline(tmp_path, hf_dir):
  from r1jax.data import procedural
  from r1jax.tokenizer import load_tokenizer, train_sentencepiece
  path = tmp_path / 'chat.jsonl'
  path.write_text('\n'.join(json.dumps(c) for c in [CONV, {'id': 'c2', 'messages': CONV['messages'][1:3]}]))
  rows = chat.load_chat_source({'kind': 'chat', 'path': str(path), 'chat_template_from': str(hf_dir)})
  assert len(rows) == 3
  texts = [r['prompt'] + r['completion'] for r in rows] + [c['text'] for c in procedural.make_sft_corpus(
      'arithmetic', 50, seed=0)]
  tok = load_tokenizer(train_sentencepiece(texts, tmp_path / 'sp', 500))
  b = next(make_sft_iterator(rows, tok, batch_size=2, max_len=96, process_index=0, process_count=1))
  ids, mask = b['input_ids'][0], b['loss_mask'][0]
  assert ids[mask > 0][-1] == tok.eos_id     # the loss covers the completion and the appended eos
  assert tok.decode(ids[mask > 0][:-1].tolist()) in {r['completion'] for r in rows}


def test_parquet_source(tmp_path):
  pq = pytest.importorskip('pyarrow.parquet')   # the `data` extra
  import pyarrow as pa
  pq.write_table(pa.Table.from_pylist([CONV]), tmp_path / 'chat.parquet')
  assert chat.load_chat_source({'path': str(tmp_path / 'chat.parquet'), 'template': 'qwen2.5'}) == \
      chat.chat_sft_rows([CONV], chat.ChatFormat.from_template('qwen2.5'))
