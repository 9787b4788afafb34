// streamText: every part of the stream, in order (Responses streaming with openai(id)).
// Usage: stream_text.mjs MODEL API
import { streamText } from "ai";
import { anthropic, main, model, openai } from "./common.mjs";

const models = { responses: openai, chat: openai.chat, messages: anthropic };

main(async () => {
  const result = streamText({ model: models[process.argv[3]](model), prompt: "hi" });
  const deltas = [];
  const parts = [];
  for await (const part of result.fullStream) {
    parts.push(part.type);
    if (part.type === "text-delta") deltas.push(part.text);
    if (part.type === "error") throw part.error;
  }
  return {
    deltas,
    parts,
    text: await result.text,
    finishReason: await result.finishReason,
    usage: await result.usage,
    responseId: (await result.response).id,
  };
});
