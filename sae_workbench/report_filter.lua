--[[
report_filter.lua: the few Quarto features the report's notebooks use, for
the pandoc fallback of sae_workbench.render (HTML and Typst/PDF alike).

1. Conditional content, as Quarto: divs, spans and code blocks with class
   .content-visible / .content-hidden and attributes when-format /
   unless-format are kept or dropped by the output format (with Quarto's
   aliases: "html" = html*, epub*, revealjs; "pdf" = "latex" = latex, beamer).
2. Float cross-references, as Quarto's div syntax: a div with id fig-* (or
   tbl-*) is a numbered figure (table) whose last paragraph is its caption.
   HTML: a <figure> whose <figcaption class="report-caption"> starts with
   "Figure N: "; Typst: a #figure(...) <fig-*>, which Typst numbers itself
   (same order, so the same N).
3. Cross-references: citations @fig-* / @tbl-* become "Figure N" / "Table N"
   (a link in HTML, #ref(<fig-*>) in Typst; [-@fig-x] gives the bare number).
   Unknown fig-/tbl-/sec- references read "?@id", as in Quarto; other
   citations (there is no bibliography) go back to their "@key" text.
]]

local KINDS = {
  fig = { name = "Figure", counter = 0 },
  tbl = { name = "Table", counter = 0 },
}

local function is_html()
  return FORMAT:match("^html") ~= nil or FORMAT:match("^epub") ~= nil
    or FORMAT == "revealjs" or FORMAT == "chunkedhtml"
end

local function format_matches(name)
  name = name:lower()
  if name == "html" then
    return is_html()
  elseif name == "html:js" then
    return is_html() and FORMAT:match("^epub") == nil
  elseif name == "pdf" or name == "latex" then
    return FORMAT == "latex" or FORMAT == "beamer" or FORMAT == "pdf"
  elseif name == "epub" then
    return FORMAT:match("^epub") ~= nil
  elseif name == "markdown" then
    return FORMAT:match("^markdown") ~= nil or FORMAT:match("^commonmark") ~= nil or FORMAT == "gfm"
  elseif name == "odt" then
    return FORMAT == "odt" or FORMAT == "opendocument"
  end
  return FORMAT == name
end

-- any of a comma/space separated list of formats
local function any_matches(spec)
  for name in spec:gmatch("[^,%s]+") do
    if format_matches(name) then
      return true
    end
  end
  return false
end

local function has_class(el, cls)
  for _, c in ipairs(el.classes) do
    if c == cls then
      return true
    end
  end
  return false
end

-- true: keep, false: drop, nil: not conditional
local function visible(el)
  local shown = has_class(el, "content-visible")
  local hidden = has_class(el, "content-hidden")
  if not shown and not hidden then
    return nil
  end
  local when, unless = el.attributes["when-format"], el.attributes["unless-format"]
  local cond = true
  if when then
    cond = cond and any_matches(when)
  end
  if unless then
    cond = cond and not any_matches(unless)
  end
  if shown then
    return cond
  end
  return not cond
end

local function unwrap_if_visible(el)
  local v = visible(el)
  if v == nil then
    return nil
  end
  return v and el.content or {}
end

local conditional = {
  Div = unwrap_if_visible,
  Span = unwrap_if_visible,
  CodeBlock = function(el)
    local v = visible(el)
    if v == nil then
      return nil
    end
    return v and el or {}
  end,
}

local numbers = {} -- id -> { kind = "fig", n = 3 }

local function float_kind(id)
  local prefix = id:match("^(%a+)%-")
  if prefix and KINDS[prefix] then
    return prefix
  end
  return nil
end

local function make_float(div)
  local kind = float_kind(div.identifier)
  if not kind then
    return nil
  end
  local id = div.identifier
  local body = pandoc.Blocks(div.content)
  local caption = pandoc.Inlines({})
  local last = body[#body]
  if last and (last.t == "Para" or last.t == "Plain") then
    caption = last.content
    body:remove(#body)
  end
  if numbers[id] then
    io.stderr:write("report_filter: duplicate cross-reference label " .. id .. ", the second one loses it\n")
    id = ""
  else
    KINDS[kind].counter = KINDS[kind].counter + 1
    numbers[id] = { kind = kind, n = KINDS[kind].counter }
  end
  local classes = { "report-float", "report-" .. kind }
  if is_html() then
    local cap = pandoc.Inlines({})
    if id ~= "" then
      cap:insert(pandoc.Strong({ pandoc.Str(KINDS[kind].name .. "\u{a0}" .. numbers[id].n .. ":") }))
      cap:insert(pandoc.Space())
    end
    cap:extend(caption)
    if kind == "tbl" then
      -- tables: caption above, as Quarto does
      body:insert(1, pandoc.Div({ pandoc.Plain(cap) }, pandoc.Attr("", { "report-caption" })))
      return pandoc.Div(body, pandoc.Attr(id, classes))
    end
    local capspan = pandoc.Span(cap, pandoc.Attr("", { "report-caption" }))
    return pandoc.Figure(body, { pandoc.Plain({ capspan }) }, pandoc.Attr(id, classes))
  end
  if FORMAT == "typst" and kind == "tbl" and #body == 1 and body[1].t == "Table" then
    -- pandoc writes every table as a #figure(kind: table); give that one the caption and label
    local tbl = body[1]
    tbl.caption = { long = { pandoc.Plain(caption) } }
    tbl.identifier = id
    return tbl
  end
  if FORMAT == "typst" then
    local inner = pandoc.write(pandoc.Pandoc(body), "typst")
    local cap = pandoc.write(pandoc.Pandoc({ pandoc.Plain(caption) }), "typst")
    local kind_arg = kind == "tbl" and "table" or "image"
    local label = id ~= "" and (" <" .. id .. ">") or ""
    local numbering = id ~= "" and "" or ", numbering: none"
    return pandoc.RawBlock(
      "typst",
      "#figure(kind: " .. kind_arg .. numbering .. ", [\n" .. inner .. "\n], caption: [" .. cap:gsub("%s+$", "") .. "])" .. label
    )
  end
  -- other formats: numbered caption paragraph after the content
  local cap = pandoc.Inlines({ pandoc.Strong({ pandoc.Str(KINDS[kind].name .. " " .. (numbers[id] and numbers[id].n or "") .. ":") }), pandoc.Space() })
  cap:extend(caption)
  body:insert(pandoc.Para(cap))
  return pandoc.Div(body, pandoc.Attr(id, classes))
end

-- Quarto's table syntax `: Caption {#tbl-x}` puts the id on the Table itself:
-- number it like a `::: {#tbl-x}` div (the caption becomes the last paragraph).
local function table_float(tbl)
  local id = tbl.identifier or ""
  if not id:match("^tbl%-") then
    return nil
  end
  local caption = pandoc.Inlines({})
  for _, b in ipairs(tbl.caption.long or {}) do
    if b.content then
      caption:extend(b.content)
    end
  end
  tbl.identifier = ""
  tbl.caption = { long = {} }
  return make_float(pandoc.Div({ tbl, pandoc.Para(caption) }, pandoc.Attr(id)))
end

local function resolve(cite)
  local out = pandoc.Inlines({})
  for i, c in ipairs(cite.citations) do
    if i > 1 then
      out:insert(pandoc.Str(","))
      out:insert(pandoc.Space())
    end
    local target = numbers[c.id]
    if target then
      local num = tostring(target.n)
      local text = c.mode == "SuppressAuthor" and num or (KINDS[target.kind].name .. "\u{a0}" .. num)
      if FORMAT == "typst" then
        if c.mode == "SuppressAuthor" then
          out:insert(pandoc.RawInline("typst", "#link(<" .. c.id .. ">)[" .. num .. "]"))
        else
          out:insert(pandoc.RawInline("typst", "#ref(<" .. c.id .. ">)"))
        end
      elseif is_html() then
        out:insert(pandoc.Link({ pandoc.Str(text) }, "#" .. c.id, "", pandoc.Attr("", { "quarto-xref" })))
      else
        out:insert(pandoc.Str(text))
      end
    elseif float_kind(c.id) or c.id:match("^sec%-") then
      out:insert(pandoc.Strong({ pandoc.Str("?@" .. c.id) }))
    else
      out:insert(pandoc.Str("@" .. c.id))
    end
  end
  return out
end

local floats = {
  Pandoc = function(doc)
    doc.blocks = doc.blocks:walk({ Div = make_float, Table = table_float })
    doc.blocks = doc.blocks:walk({ Cite = resolve })
    return doc
  end,
}

return { conditional, floats }
