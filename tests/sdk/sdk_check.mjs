// sdk_check.mjs - the official OpenAI and Anthropic SDKs, unchanged but
// for their base URL, against a running sluice.  Prints one JSON object
// with what each call returned; tests/integration/test_sdks.py asserts it.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.SLUICE_URL;
const key = process.env.SLUICE_KEY;
const msgs = [{ role: 'user', content: 'Say hello' }];
const out = {};

const oa = new OpenAI({ baseURL: base + '/v1', apiKey: key, maxRetries: 0 });
const chat = await oa.chat.completions.create({ model: 'gpt-4o-mini',
    messages: msgs });
out.chat = { content: chat.choices[0].message.content, usage: chat.usage };

const stream = await oa.chat.completions.create({ model: 'gpt-4o-mini',
    messages: msgs, stream: true });
let text = '', chunks = 0, usage = null;
for await (const ch of stream) {
    chunks++;
    if (ch.choices.length > 0)
        text += ch.choices[0].delta.content ?? '';
    if (ch.usage)
        usage = ch.usage;
}
out.chat_stream = { text, chunks, usage };

const emb = await oa.embeddings.create({ model: 'text-embedding-3-small',
    input: 'hello' });
out.embeddings = { dims: emb.data[0].embedding.length, usage: emb.usage };

const models = await oa.models.list();
out.models = models.data.map((m) => m.id);

try {
    await new OpenAI({ baseURL: base + '/v1', apiKey: 'sk-wrong',
        maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini',
        messages: msgs });
    out.bad_key = 'accepted';
} catch (e) {
    out.bad_key = { status: e.status, name: e.constructor.name };
}

const an = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
const msg = await an.messages.create({ model: 'claude-sonnet-4-5',
    max_tokens: 64, messages: msgs });
out.messages = { text: msg.content[0].text, usage: msg.usage };

const ms = await an.messages.create({ model: 'claude-sonnet-4-5',
    max_tokens: 64, messages: msgs, stream: true });
let mtext = '', events = 0, out_tokens = null;
for await (const ev of ms) {
    events++;
    if (ev.type === 'content_block_delta')
        mtext += ev.delta.text ?? '';
    if (ev.type === 'message_delta')
        out_tokens = ev.usage.output_tokens;
}
out.messages_stream = { text: mtext, events, output_tokens: out_tokens };

try {
    await new Anthropic({ baseURL: base, apiKey: 'sk-wrong', maxRetries: 0 })
        .messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8,
        messages: msgs });
    out.bad_key_anthropic = 'accepted';
} catch (e) {
    out.bad_key_anthropic = { status: e.status, name: e.constructor.name };
}

console.log(JSON.stringify(out));
