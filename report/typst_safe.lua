--[[ Keep data text literal in Typst output.

Pandoc 3.9's Typst writer escapes text well, with two holes through which a
token, a context or a URL from the labelled texts becomes Typst markup:
  1. an inline written as a Typst call (#strong[...], #emph[...],
     #link(...)[...], ...) followed by text starting with ".", "(" or "["
     continues the call: **www**.example.com -> #strong[www].example, "strong
     does not have field". A ";" ends the expression and prints nothing.
  2. a Plain block (a table cell, a tight list item) whose text starts like a
     heading, list or term item ("= x", "- x", "+ x", "/ x", "1. x") opens a
     heading or list inside the table ("pagebreaks are not allowed inside of
     containers"). An empty content block #[] in front means the line does
     not start with it.
And one for layout:
  3. pandoc sizes the columns of a pipe table with rows over 72 characters by
     its separator's dashes (`|:--|---:|`: equal shares), so a long hook name
     runs over the next column; without widths, Typst sizes each column to
     its content and wraps.
And one for the feature browser:
  4. the browser (report/browser/, beside the HTML report) is HTML only; in
     the PDF a link into it is its text: Quarto would turn a book-relative
     "../browser/<hook>/feature.html#211" into a reference to a label <211>
     that does not exist ("label `<211>` does not exist in the document").
Quarto runs it (report/_quarto.yml `filters:`), and so does the pandoc fallback
(sae_workbench.render reads the same list).
--]]

if FORMAT ~= "typst" then
  return {}
end

local CALLS = {
  Strong = true, Emph = true, Underline = true, Strikeout = true, Superscript = true,
  Subscript = true, SmallCaps = true, Link = true, Span = true, Cite = true, Quoted = true,
}

local function end_calls(inlines)
  local out = pandoc.Inlines({})
  for i, el in ipairs(inlines) do
    out:insert(el)
    local nxt = inlines[i + 1]
    if CALLS[el.t] and nxt and nxt.t == "Str" and nxt.text:match("^[%.%(%[]") then
      out:insert(pandoc.RawInline("typst", ";"))
    end
  end
  return out
end

local function guard_line_start(el)
  local first = el.content[1]
  if first and first.t == "Str" and (first.text:match("^[=%-%+/]") or first.text:match("^%d+[.)]$")) then
    el.content:insert(1, pandoc.RawInline("typst", "#[]"))
    return el
  end
end

local function auto_widths(tbl)
  for i, spec in ipairs(tbl.colspecs) do
    tbl.colspecs[i] = { spec[1], nil }
  end
  return tbl
end

local function browser_link(el)
  if el.target:match("^%.%./browser/") then
    return el.content
  end
end

return {
  { Link = browser_link },
  { Inlines = end_calls, Plain = guard_line_start, Table = auto_widths },
}
