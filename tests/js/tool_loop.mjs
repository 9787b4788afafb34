// A tool loop on /v1/responses: the first step must call the tool, the SDK runs it and
// sends its result back, the loop stops when the model answers in text.
// Usage: tool_loop.mjs MODEL [generate|stream]
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";
import { main, model, openai } from "./common.mjs";

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
    model: openai(model),
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
