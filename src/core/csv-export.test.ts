import { describe, expect, it } from 'vitest';
import { type CsvCell, csvNumber, toCsv } from './csv-export';

describe('toCsv', () => {
  it('ends every row with CRLF and leaves plain fields unquoted', () => {
    expect(toCsv([['a', 'b'], ['c', 'd']])).toBe('a,b\r\nc,d\r\n');
  });

  it('renders no rows as an empty string', () => {
    expect(toCsv([])).toBe('');
  });

  it.each<[string, CsvCell, string]>([
    ['null', null, ''],
    ['empty text', '', ''],
    ['comma', 'a,b', '"a,b"'],
    ['double quote', 'say "hi"', '"say ""hi"""'],
    ['LF', 'two\nlines', '"two\nlines"'],
    ['CRLF inside', 'two\r\nlines', '"two\r\nlines"'],
    ['unicode', 'Société £5', 'Société £5'],
    ['spaces kept', '  padded  ', '  padded  '],
    ['a bigint', 123450n, '123450'],
    ['a negative bigint', -5n, '-5'],
    ['a number', { number: '12.50' }, '12.50'],
    ['a negative number', { number: '-12.50' }, '-12.50'],
    ['a tiny number', { number: '0.000001' }, '0.000001'],
    ['a huge number', { number: '34100000000000000001' }, '34100000000000000001'],
  ])('%s', (_name, cell, expected) => {
    expect(toCsv([[cell]])).toBe(`${expected}\r\n`);
  });

  it.each<[string, string, string]>([
    ['=', '=SUM(A1:A9)', "'=SUM(A1:A9)"],
    ['+', '+44 20 7946 0000', "'+44 20 7946 0000"],
    ['-', '-12.50', "'-12.50"],
    ['@', '@SUM(A1)', "'@SUM(A1)"],
    ['tab', '\t=1+1', "'\t=1+1"],
    ['CR', '\r=1+1', `"'\r=1+1"`],
    ['= with a comma', '=HYPERLINK("http://x",1)', `"'=HYPERLINK(""http://x"",1)"`],
  ])('escapes a text cell starting with %s', (_name, text, expected) => {
    expect(toCsv([[text]])).toBe(`${expected}\r\n`);
  });

  it.each(['a=b', 'x-1', "it's", 'mail@example.com'])('leaves %s alone when the special character is not first', (text) => {
    expect(toCsv([[text]])).toBe(`${text}\r\n`);
  });

  it('keeps money numeric beside escaped text in the same row', () => {
    expect(toCsv([['-credit', { number: '-12.50' }, -1250n, null, '=1']])).toBe("'-credit,-12.50,-1250,,'=1\r\n");
  });

  it.each(['1e3', '+4', '1,000', '12.', '.5', ' 1', 'NaN', '=1', ''])('refuses %j as a number cell', (text) => {
    expect(() => csvNumber(text)).toThrow(RangeError);
    expect(() => toCsv([[{ number: text }]])).toThrow(/is not a plain decimal/);
  });

  it('builds number cells with csvNumber', () => {
    expect(csvNumber('-0.5')).toEqual({ number: '-0.5' });
  });
});
