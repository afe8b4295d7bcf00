"""The alert rules' expressions, read from deploy/prometheus/alerts.yml
without a YAML library (the file keeps to one shape: `- alert: NAME` then
`expr:` either on one line or as a `|` block)."""
import re


def alert_exprs(path):
    out, name, lines = [], None, open(path).read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*- alert: (\S+)", line)
        if m:
            name = m.group(1)
        m = re.match(r"(\s*)expr: (.*)$", line)
        if m:
            if m.group(2).strip() == "|":
                indent = len(m.group(1))
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or
                                          len(lines[i]) - len(lines[i].lstrip()) > indent):
                    body.append(lines[i].strip())
                    i += 1
                out.append((name, " ".join(body)))
                continue
            out.append((name, m.group(2)))
        i += 1
    return out


def as_bool(expr):
    """Comparisons with a number become `bool` ones: the expression then
    answers 0 or 1 for every series instead of nothing when all is well."""
    return re.sub(r"(==|!=|>=|<=|>|<)\s+(?=[0-9.])", r"\1 bool ", expr)
