// Shared by the scripts: providers pointed at the gateway (POLYROUTE_URL), and the one
// JSON line each script prints for tests/gateway/test_vercel_ai.py to assert on.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";

const base = `${process.env.POLYROUTE_URL}/v1`;

export const openai = createOpenAI({ baseURL: base, apiKey: "unused" });
export const anthropic = createAnthropic({ baseURL: base, apiKey: "unused" });
export const model = process.argv[2];

export function report(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

// An SDK error as data: the test shows what the gateway sent instead of a stack trace.
export async function main(run) {
  try {
    report(await run());
  } catch (error) {
    report({ error: String(error), status: error.statusCode, body: error.responseBody });
    process.exitCode = 1;
  }
}
