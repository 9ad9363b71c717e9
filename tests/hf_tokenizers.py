"""Small Hugging Face tokenizer directories written by tests, with the chat templates shipped
with them (Qwen2.5's and Llama 3.1's, without their tool-calling branches)."""
import json

QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\") %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n")

LLAMA31_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = \"26 Jul 2024\" %}\n"
    "{%- endif %}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
    "message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n")

# DeepSeek-R1-Distill's recent template opens <think> in the generation prompt.
R1_DISTILL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + "
    "'<｜end▁of▁sentence｜>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}")

CORPUS = ["What is 2 + 3? <think> 2 + 3 = 5 </think> <answer> 5 </answer>",
          "The quick brown fox jumps over the lazy dog.", "Compute (4 - 1) * 2 = 6."] * 20


def write_hf_tokenizer(folder, kind="qwen", corpus=CORPUS):
  """A byte-level BPE tokenizer directory in the style of `kind` (qwen | llama | r1_distill):
  tokenizer.json, tokenizer_config.json, vocab.json + merges.txt, chat_template.jinja."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  specials = {"qwen": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
              "llama": ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                        "<|start_header_id|>", "<|end_header_id|>"],
              "r1_distill": ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>",
                             "<｜Assistant｜>"]}[kind]
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(list(corpus), trainer)
  tok.add_tokens(["<think>", "</think>", "<answer>", "</answer>"])
  folder.mkdir(parents=True, exist_ok=True)
  tok.save(str(folder / "tokenizer.json"))
  tok.model.save(str(folder))  # vocab.json + merges.txt
  config = {"qwen": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
            "llama": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
            "r1_distill": {"bos_token": "<｜begin▁of▁sentence｜>",
                           "eos_token": "<｜end▁of▁sentence｜>"}}[kind]
  (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
  template = {"qwen": QWEN_CHAT_TEMPLATE, "llama": LLAMA31_CHAT_TEMPLATE,
              "r1_distill": R1_DISTILL_CHAT_TEMPLATE}[kind]
  (folder / "chat_template.jinja").write_text(template)
  return folder
