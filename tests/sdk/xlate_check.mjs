// xlate_check.mjs - the official SDKs across formats through sluice: the
// OpenAI SDK calling a claude-* model (an Anthropic upstream) and the
// Anthropic SDK calling a gpt-* model (an OpenAI-format upstream), each
// streamed and not, each a tool call round trip (the model asks for the
// tool, the client sends its result, the model answers).  Only the base
// URL is changed; each call carries x-client-request-id so its usage row
// can be found, and the mock's x-mock-* token numbers.  Prints one JSON
// object; tests/integration/test_translate.py asserts it.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.SLUICE_URL;
const key = process.env.SLUICE_KEY;
const mockTokens = { 'x-mock-prompt-tokens': '31',
    'x-mock-completion-tokens': '7', 'x-mock-cached-tokens': '10' };
const opts = (id) => ({ headers: { ...mockTokens, 'x-client-request-id': id } });
const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];
const schema = { type: 'object', properties: { city: { type: 'string' } },
    required: ['city'] };
const out = {};

// ---- OpenAI SDK, Anthropic upstream ----
const oa = new OpenAI({ baseURL: base + '/v1', apiKey: key, maxRetries: 0 });
const otools = [{ type: 'function', function: { name: 'get_weather',
    description: 'The weather in a city', parameters: schema } }];
const claude = 'claude-sonnet-4-5';
const result = (msg) => ({ role: 'tool', tool_call_id: msg.tool_calls[0].id,
    content: '22 C, sunny' });
const call = (msg) => ({ id: msg.tool_calls[0].id,
    name: msg.tool_calls[0].function.name,
    args: JSON.parse(msg.tool_calls[0].function.arguments) });

{
    const c1 = await oa.chat.completions.create({ model: claude,
        messages: ask, tools: otools }, opts('oa-1'));
    const m1 = c1.choices[0].message;
    const c2 = await oa.chat.completions.create({ model: claude,
        tools: otools, messages: [...ask, m1, result(m1)] }, opts('oa-2'));
    out.oa = { finish1: c1.choices[0].finish_reason, call: call(m1),
        usage1: c1.usage, object: c1.object,
        text2: c2.choices[0].message.content,
        finish2: c2.choices[0].finish_reason, usage2: c2.usage };
}
{
    // the SDK's own accumulation of chunks, tool call pieces included
    const s1 = oa.chat.completions.stream({ model: claude, messages: ask,
        tools: otools, stream_options: { include_usage: true } },
        opts('oa-s1'));
    let chunks = 0;
    for await (const ch of s1)
        chunks++;
    const f1 = await s1.finalChatCompletion();
    const m1 = f1.choices[0].message;
    const s2 = oa.chat.completions.stream({ model: claude, tools: otools,
        messages: [...ask, { role: 'assistant', content: m1.content,
            tool_calls: m1.tool_calls.map((t) => ({ id: t.id,
                type: 'function', function: { name: t.function.name,
                    arguments: t.function.arguments } })) }, result(m1)],
        stream_options: { include_usage: true } }, opts('oa-s2'));
    let text = '';
    for await (const ch of s2)
        if (ch.choices.length > 0)
            text += ch.choices[0].delta.content ?? '';
    const f2 = await s2.finalChatCompletion();
    out.oa_stream = { chunks, finish1: f1.choices[0].finish_reason,
        call: call(m1), usage1: f1.usage, text2: text,
        finish2: f2.choices[0].finish_reason, usage2: f2.usage };
}

// ---- Anthropic SDK, OpenAI-format upstream ----
const an = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
const atools = [{ name: 'get_weather', description: 'The weather in a city',
    input_schema: schema }];
const gpt = 'gpt-4o-mini';
const tresult = (tu) => ({ role: 'user', content: [{ type: 'tool_result',
    tool_use_id: tu.id, content: '22 C, sunny' }] });
const tcall = (tu) => ({ id: tu.id, name: tu.name, input: tu.input });

{
    const m1 = await an.messages.create({ model: gpt, max_tokens: 256,
        messages: ask, tools: atools }, opts('an-1'));
    const tu = m1.content.find((b) => b.type === 'tool_use');
    const m2 = await an.messages.create({ model: gpt, max_tokens: 256,
        tools: atools, messages: [...ask, { role: 'assistant',
            content: m1.content }, tresult(tu)] }, opts('an-2'));
    out.an = { stop1: m1.stop_reason, call: tcall(tu), usage1: m1.usage,
        type: m1.type, text2: m2.content[0].text, stop2: m2.stop_reason,
        usage2: m2.usage };
}
{
    const s1 = an.messages.stream({ model: gpt, max_tokens: 256,
        messages: ask, tools: atools }, opts('an-s1'));
    const types = [];
    for await (const ev of s1)
        types.push(ev.type);
    const f1 = await s1.finalMessage();
    const tu = f1.content.find((b) => b.type === 'tool_use');
    const s2 = an.messages.stream({ model: gpt, max_tokens: 256,
        tools: atools, messages: [...ask, { role: 'assistant',
            content: f1.content }, tresult(tu)] }, opts('an-s2'));
    let text = '';
    s2.on('text', (t) => { text += t; });
    const f2 = await s2.finalMessage();
    out.an_stream = { types, stop1: f1.stop_reason, call: tcall(tu),
        usage1: f1.usage, text2: text, stop2: f2.stop_reason,
        usage2: f2.usage };
}

// ---- errors in the caller's shape, and a refusal that names its cause ----
try {
    await oa.chat.completions.create({ model: claude, messages: ask },
        { headers: { 'x-mock-status': '429' } });
    out.oa_error = 'accepted';
} catch (e) {
    out.oa_error = { status: e.status, name: e.constructor.name,
        message: e.error?.message, type: e.error?.type };
}
try {
    await an.messages.create({ model: gpt, max_tokens: 8, messages: ask },
        { headers: { 'x-mock-status': '503' } });
    out.an_error = 'accepted';
} catch (e) {
    out.an_error = { status: e.status, name: e.constructor.name,
        message: e.error?.error?.message, type: e.error?.error?.type };
}
try {
    await oa.chat.completions.create({ model: claude, messages: ask, n: 2 });
    out.oa_refused = 'accepted';
} catch (e) {
    out.oa_refused = { status: e.status, message: e.error?.message };
}

console.log(JSON.stringify(out));
