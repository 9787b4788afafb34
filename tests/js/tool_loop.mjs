// A tool loop: the first step must call the tool, the SDK runs it and sends its result
// back, the loop stops when the model answers in text. API: responses (openai(id), the
// default), chat (openai.chat(id)) or messages (anthropic(id)).
// Usage: tool_loop.mjs MODEL [generate|stream] [API]
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";
import { anthropic, main, model, openai } from "./common.mjs";

const models = { responses: openai, chat: openai.chat, messages: anthropic };

const calls = [];
const weather = tool({
  description: "The weather in a city.",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    calls.push(city);
    return `sunny in ${city}`;
  },
});

main(async () => {
  const run = process.argv[3] === "stream" ? streamText : generateText;
  let streamError;
  const result = await run({
    model: models[process.argv[4] ?? "responses"](model),
    tools: { weather },
    stopWhen: stepCountIs(4),
    prepareStep: ({ stepNumber }) =>
      stepNumber === 0 ? { toolChoice: { type: "tool", toolName: "weather" } } : {},
    prompt: "Weather in Paris?",
    onError: ({ error }) => {
      streamError = error;
    },
  });
  const steps = await result.steps;
  if (streamError !== undefined) throw streamError;
  return {
    calls,
    text: await result.text,
    steps: steps.map((s) => ({
      finishReason: s.finishReason,
      toolCalls: s.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
      toolResults: s.toolResults.map((r) => ({ id: r.toolCallId, output: r.output })),
      text: s.text,
    })),
    usage: await result.totalUsage,
  };
});
