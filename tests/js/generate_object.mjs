// generateObject with a zod schema: Structured Outputs (text.format json_schema on
// /v1/responses). Usage: generate_object.mjs MODEL
import { generateObject } from "ai";
import { z } from "zod";
import { main, model, openai } from "./common.mjs";

const City = z.object({
  name: z.string(),
  population: z.number().int(),
  landmarks: z.array(z.string()),
});

main(async () => {
  const result = await generateObject({
    model: openai(model),
    schema: City,
    schemaName: "city",
    prompt: "Describe Paris.",
  });
  return { object: result.object, finishReason: result.finishReason, usage: result.usage };
});
