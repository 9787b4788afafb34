// generateText on the default model: openai(id) calls /v1/responses; openai.chat(id)
// /v1/chat/completions; anthropic(id) /v1/messages. Usage: generate_text.mjs MODEL API
import { generateText } from "ai";
import { anthropic, main, model, openai } from "./common.mjs";

const models = { responses: openai, chat: openai.chat, messages: anthropic };

main(async () => {
  const result = await generateText({
    model: models[process.argv[3]](model),
    system: "Be brief.",
    prompt: "hi",
    maxOutputTokens: 200,
  });
  return {
    text: result.text,
    finishReason: result.finishReason,
    usage: result.usage,
    responseId: result.response.id,
    modelId: result.response.modelId,
    warnings: result.warnings,
  };
});
