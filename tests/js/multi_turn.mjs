// A second turn that sends the first answer back as the SDK keeps it (response.messages):
// with store on (the default) the SDK sends its stored items as item_reference.
// Usage: multi_turn.mjs MODEL
import { generateText } from "ai";
import { main, model, openai } from "./common.mjs";

main(async () => {
  const messages = [{ role: "user", content: "hi" }];
  const first = await generateText({ model: openai(model), messages });
  messages.push(...first.response.messages, { role: "user", content: "again" });
  const second = await generateText({ model: openai(model), messages });
  return { first: first.text, second: second.text, firstId: first.response.id };
});
