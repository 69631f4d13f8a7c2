import { describe, expect, it } from 'vitest';
import { sseParser } from './sse';

describe('sseParser', () => {
  it('parses named events with ids, skipping comments', () => {
    const p = sseParser();
    const evs = p.push(': keep-alive\n\nevent: settled\nid: 7\ndata: {"seq":7}\n\nevent: provisional\ndata: {"rows":[]}\n\n');
    expect(evs).toEqual([
      { event: 'settled', id: '7', data: '{"seq":7}' },
      { event: 'provisional', data: '{"rows":[]}' },
    ]);
    expect(p.lastEventId()).toBe('7');
  });

  it('joins events split across chunks at any byte, with every line ending', () => {
    const text = 'retry: 2000\r\nevent: a\r\ndata: one\r\ndata: two\r\n\r\nid: 9\rdata: x\r\revent: b\ndata:no space\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const p = sseParser();
      const evs = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(evs).toEqual([
        { event: 'a', data: 'one\ntwo' },
        { event: 'message', id: '9', data: 'x' },
        { event: 'b', data: 'no space' },
      ]);
      expect(p.retryMs()).toBe(2000);
      expect(p.lastEventId()).toBe('9');
    }
  });

  it('drops an event without data and an unfinished one', () => {
    const p = sseParser();
    expect(p.push('event: empty\n\nevent: half\ndata: 1\n')).toEqual([]);
    expect(p.push('\n')).toEqual([{ event: 'half', data: '1' }]);
  });

  it('ignores a byte-order mark and unknown fields', () => {
    const p = sseParser();
    expect(p.push('\uFEFFfoo: bar\ndata: d\n\n')).toEqual([{ event: 'message', data: 'd' }]);
  });
});
