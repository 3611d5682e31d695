// Parses every ```mermaid block of the markdown files named on the command line with the
// mermaid library (the one GitHub renders them with), and exits 1 naming each block that does
// not parse. Run by make check-mermaid, part of make lint.
import { JSDOM } from 'jsdom';
import fs from 'fs';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

let bad = 0;
let n = 0;
for (const file of process.argv.slice(2)) {
  const src = fs.readFileSync(file, 'utf8');
  const block = /```mermaid\n([\s\S]*?)```/g;
  let m;
  while ((m = block.exec(src))) {
    n++;
    const line = src.slice(0, m.index).split('\n').length;
    try {
      await mermaid.parse(m[1]);
    } catch (e) {
      bad++;
      console.error(`${file}:${line}: mermaid: ${String(e.message || e).split('\n').slice(0, 3).join(' | ')}`);
    }
  }
}
console.log(`check-mermaid: ${n} diagrams, ${bad} that do not parse`);
process.exit(bad > 0 ? 1 : 0);
