// cloud_check.mjs - the official SDKs, unchanged but for their base URL,
// on a model sluice routes to a cloud upstream (bedrock, vertex): the
// Anthropic SDK's messages, plain and streamed, and the OpenAI SDK's
// chat completions (translated), plain and streamed with usage.  Prints
// one JSON line of what each returned (tests/integration/test_bedrock.py).
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.SLUICE_URL;
const key = process.env.SLUICE_KEY;
const model = process.env.SLUICE_MODEL;
const msgs = [{ role: 'user', content: 'Hello?' }];
const out = {};

const an = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
const msg = await an.messages.create({ model, max_tokens: 64,
    messages: msgs });
out.messages = { text: msg.content[0].text, usage: msg.usage,
    stop: msg.stop_reason };

const ms = await an.messages.create({ model, max_tokens: 64,
    messages: msgs, stream: true });
let mtext = '', events = 0, in_tokens = null, out_tokens = null;
for await (const ev of ms) {
    events++;
    if (ev.type === 'message_start')
        in_tokens = ev.message.usage.input_tokens;
    if (ev.type === 'content_block_delta')
        mtext += ev.delta.text ?? '';
    if (ev.type === 'message_delta')
        out_tokens = ev.usage.output_tokens;
}
out.messages_stream = { text: mtext, events, input_tokens: in_tokens,
    output_tokens: out_tokens };

const oa = new OpenAI({ baseURL: base + '/v1', apiKey: key, maxRetries: 0 });
const chat = await oa.chat.completions.create({ model, messages: msgs });
out.chat = { text: chat.choices[0].message.content, usage: chat.usage,
    finish: chat.choices[0].finish_reason };

const cs = await oa.chat.completions.create({ model, messages: msgs,
    stream: true, stream_options: { include_usage: true } });
let ctext = '', usage = null, finish = null;
for await (const ch of cs) {
    if (ch.choices.length > 0) {
        ctext += ch.choices[0].delta.content ?? '';
        finish = ch.choices[0].finish_reason ?? finish;
    }
    if (ch.usage)
        usage = ch.usage;
}
out.chat_stream = { text: ctext, usage, finish };

console.log(JSON.stringify(out));
