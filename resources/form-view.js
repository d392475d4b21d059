/* global window, RED, $, setTimeout, clearTimeout */
/*
 * A Form view and a JSON view of one JSON property of a node (the guardrail's policy, llm-plan's
 * action catalogue), with a toggle between them. The form edits only what it shows and keeps
 * everything else of the JSON as it was; a JSON the form cannot show stays in the JSON view with a
 * message. While the form or the JSON holds a mistake the field is drawn red, the problems are
 * listed, and the dialog's Done button is disabled (the tray's own `disabled` class, which Node-RED's
 * JSON editor uses too). Node-RED loads this file (from the package's resources/ folder) before the
 * nodes' own editor scripts run.
 */
(function () {
  'use strict';
  if (window.EdgeLlmFormView) return;

  var number = RED.validators.number(true);

  $('<style>')
    .text(
      [
        '.edge-llm-form-section h4 { margin: 12px 0 6px; }',
        '.edge-llm-form .form-row.edge-llm-form-line { margin-bottom: 4px; }',
        '.edge-llm-form-label { margin: 0 4px 0 8px; }',
        '.edge-llm-form-line input, .edge-llm-form-line select { margin-right: 4px; }',
        '.edge-llm-form-check { white-space: nowrap; margin-left: 6px; }',
        '.edge-llm-form-check input { width: auto; vertical-align: baseline; margin: 0 4px 0 0; }',
        '.edge-llm-form-kept { margin: 2px 0 4px; font-size: 0.9em; font-style: italic; opacity: 0.75; }',
        '.edge-llm-form-caption { margin: 4px 0 2px; font-size: 0.9em; opacity: 0.85; }',
        '.edge-llm-form-problems { color: var(--red-ui-text-color-error, #c00); white-space: pre-wrap; margin-top: 6px; }',
        '.edge-llm-form-note { margin-top: 6px; }',
        '.edge-llm-view-toggle .selected { font-weight: bold; }',
        '.node-text-editor-row.input-error .node-text-editor { border-color: var(--red-ui-form-input-border-error-color, #d6615f); }',
      ].join('\n'),
    )
    .appendTo('head');

  /** Thrown by a form's `show` when the JSON holds something the form cannot show without loss. */
  function Unshowable(message) {
    this.message = message;
  }

  function clone(v) {
    return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
  }

  function own(o, k) {
    return !!o && Object.prototype.hasOwnProperty.call(o, k);
  }

  /** Sets `o[k]` (keeping its place among the keys) or deletes it when the form leaves it blank. */
  function put(o, k, v) {
    if (v === undefined) delete o[k];
    else o[k] = v;
  }

  /** The element Node-RED draws a field's error on: a typed input's container, else the field. */
  function drawn(el) {
    var $el = $(el);
    var typed = $el.next('.red-ui-typedInput-container');
    return typed.length ? typed : $el;
  }

  /**
   * Collects what a form reads: its value, the fields by policy path (to draw a checker's
   * problems on), and the fields' own mistakes.
   */
  function Reader() {
    this.problems = [];
    this.fields = {};
  }
  Reader.prototype.at = function (path, el) {
    if (el && !this.fields[path]) this.fields[path] = el;
    return this;
  };
  Reader.prototype.problem = function (el, message) {
    this.problems.push({ el: el, message: message });
  };
  /** A number field: blank is undefined; text that is no number is a problem of the field. */
  Reader.prototype.number = function (el, message) {
    var v = String($(el).val() || '').trim();
    if (!number(v)) {
      this.problem(el, message);
      return undefined;
    }
    return v === '' ? undefined : Number(v);
  };
  /** A text field: blank is undefined. */
  Reader.prototype.text = function (el) {
    var v = String($(el).val() || '');
    return v.trim() === '' ? undefined : v;
  };
  /** A comma-separated list: blank is undefined. */
  Reader.prototype.list = function (el) {
    var v = String($(el).val() || '').trim();
    if (!v) return undefined;
    return v.split(',').map(function (s) {
      return s.trim();
    });
  };
  /** A name that must be given once in its list (action names, parameter names, interlock ids). */
  Reader.prototype.name = function (el, seen, messages) {
    var v = String($(el).val() || '').trim();
    if (!v) this.problem(el, messages.empty);
    else if (own(seen, v)) {
      this.problem(el, messages.duplicate.replace('__name__', v));
      this.problem(seen[v], messages.duplicate.replace('__name__', v));
    } else seen[v] = el;
    return v;
  };

  /** A list the form shows as comma-separated text, or undefined when commas would lose it. */
  function listText(values) {
    if (values === undefined) return '';
    if (!Array.isArray(values)) return undefined;
    for (var i = 0; i < values.length; i++) {
      if (typeof values[i] !== 'string' || values[i] === '' || /,|^\s|\s$/.test(values[i])) return undefined;
    }
    return values.join(', ');
  }

  /**
   * Builds the toggle, the two views and the checks in a dialog.
   *
   * options: ns (message prefix of the node type's catalog), toggle, form, json (jQuery elements),
   * problems (the element that lists problems), editor (the JSON code editor), text (the JSON text
   * the node holds), blank (the value a blank text stands for, where blank is allowed),
   * show(value) and read(reader) (the form; `show` throws EdgeLlmFormView.Unshowable),
   * check(text) (a promise of the checker's problems, `{path, message}`, and `text` where the
   * checker words the whole problem itself), active() (whether the
   * property is in use; the guardrail's policy is not while it comes from a file).
   */
  function create(options) {
    var t = function (key, vars) {
      return RED._(options.ns + key, vars);
    };
    var state = { view: 'form', text: options.text || '', shown: undefined, checking: 0, problems: [] };
    var timer;
    var serial = 0;

    function parse(text) {
      if (!text.trim() && options.blank !== undefined) return { ok: true, value: undefined };
      try {
        return { ok: true, value: JSON.parse(text) };
      } catch (e) {
        return { ok: false, message: t('form.not-json', { message: e.message }) };
      }
    }

    function toText(value) {
      if (value === undefined) return '';
      // An unchanged form gives back the text it was shown from, formatting and all.
      if (JSON.stringify(value) === JSON.stringify(state.shown)) return state.text;
      return JSON.stringify(value, null, 2);
    }

    function showForm(text) {
      var parsed = parse(text);
      if (!parsed.ok) return parsed.message;
      try {
        options.show(clone(parsed.value));
      } catch (e) {
        if (e instanceof Unshowable) return e.message;
        throw e;
      }
      state.text = text;
      state.shown = clone(parsed.value);
      return undefined;
    }

    function setView(view, note) {
      state.view = view;
      options.toggle.find('button').each(function () {
        $(this).toggleClass('selected', $(this).data('view') === view);
      });
      options.form.toggle(view === 'form');
      options.json.toggle(view === 'json');
      options.note.text(note || '').toggle(!!note);
      if (view === 'json' && options.editor.resize) options.editor.resize();
    }

    function unmark() {
      options.form.find('.input-error').removeClass('input-error').removeAttr('title');
      options.json.removeClass('input-error');
    }

    function mark(el, message) {
      drawn(el).addClass('input-error').attr('title', message);
    }

    function list(problems) {
      state.problems = problems;
      options.problems.empty().toggle(problems.length > 0);
      problems.forEach(function (p) {
        $('<div>').text(p).appendTo(options.problems);
      });
      gate();
    }

    function gate() {
      // a check that answers after the dialog has closed says nothing about the next dialog
      if (state.closed) return;
      var busy = state.checking > 0 || !!state.pending;
      var bad = options.active() && (state.problems.length > 0 || busy);
      // what the dialog's tests wait on: whether a check is still to answer
      options.toggle.attr('data-check', busy ? 'pending' : 'done');
      $('#node-dialog-ok').toggleClass('disabled', bad);
    }

    /** Where a checker's problem belongs: the field of its path, or of the nearest path above. */
    function place(fields, p) {
      var path = p.path;
      while (path) {
        if (fields[path]) {
          mark(fields[path], p.message);
          ['min', 'max', 'minimum', 'maximum'].forEach(function (k) {
            if (fields[path + '.' + k] && new RegExp('\\b' + k + '\\b').test(p.message))
              mark(fields[path + '.' + k], p.message);
          });
          return;
        }
        var up = path.replace(/(\.[^.[\]]*|\[\d+\])$/, '');
        if (up === path) return;
        path = up;
      }
    }

    /** Reads the form or the JSON, draws its own mistakes, then asks the checker about the rest. */
    function validate() {
      clearTimeout(timer);
      state.pending = false;
      var id = ++serial;
      unmark();
      if (!options.active()) return list([]);
      var text;
      var fields = {};
      if (state.view === 'form') {
        var reader = new Reader();
        var value = options.read(reader);
        if (reader.problems.length) {
          reader.problems.forEach(function (p) {
            mark(p.el, p.message);
          });
          return list(
            reader.problems
              .map(function (p) {
                return p.message;
              })
              .filter(function (m, i, all) {
                return all.indexOf(m) === i;
              }),
          );
        }
        text = toText(value);
        fields = reader.fields;
      } else {
        text = options.editor.getValue();
        var parsed = parse(text);
        if (!parsed.ok) {
          options.json.addClass('input-error');
          return list([parsed.message]);
        }
      }
      state.checking++;
      gate();
      options
        .check(text)
        .then(
          function (problems) {
            return problems;
          },
          function (err) {
            return [
              {
                path: '',
                message: t('form.check-failed', { message: (err && err.statusText) || String(err) }),
              },
            ];
          },
        )
        .then(function (problems) {
          state.checking--;
          if (id !== serial) return gate();
          problems.forEach(function (p) {
            if (state.view === 'form') place(fields, p);
            else options.json.addClass('input-error');
          });
          list(
            problems.map(function (p) {
              return p.text || (p.path ? p.path + ': ' + p.message : p.message);
            }),
          );
        });
    }

    function changed() {
      clearTimeout(timer);
      // A change waits for its check: Done stays off until then.
      state.pending = true;
      timer = setTimeout(validate, 200);
      gate();
    }

    options.toggle.on('click', 'button', function (e) {
      e.preventDefault();
      var to = $(this).data('view');
      if (to === state.view) return;
      if (to === 'json') {
        var reader = new Reader();
        var value = options.read(reader);
        if (reader.problems.length) {
          validate();
          options.note.text(t('form.fix-first')).show();
          return;
        }
        var text = toText(value);
        state.text = text;
        state.shown = undefined;
        options.editor.setValue(text, -1);
        setView('json');
      } else {
        var why = showForm(options.editor.getValue());
        if (why) {
          setView('json', t('form.cannot-show', { reason: why }));
          return;
        }
        setView('form');
      }
      validate();
    });
    options.form.on('change input', 'input, select', changed);
    options.editor.on('change', function () {
      if (state.view === 'json') changed();
    });

    options.editor.setValue(state.text, -1);
    var why = showForm(state.text);
    if (why) setView('json', t('form.cannot-show', { reason: why }));
    else setView('form');
    setTimeout(validate, 0);

    return {
      changed: changed,
      validate: validate,
      view: function () {
        return state.view;
      },
      /** The JSON text to save: from the form in the Form view. */
      text: function () {
        if (state.view === 'json') return options.editor.getValue();
        var reader = new Reader();
        var value = options.read(reader);
        return reader.problems.length ? state.text : toText(value);
      },
      close: function () {
        clearTimeout(timer);
        serial++;
        state.closed = true;
      },
    };
  }

  /** A typed input of the value types a comparison takes, set to `v`; undefined when it cannot show v. */
  function valueInput(el, v) {
    el.typedInput({ types: ['num', 'str', 'bool', 'json'] });
    if (v === undefined) return el.typedInput('type', 'num');
    var type = Array.isArray(v) ? 'json' : { number: 'num', string: 'str', boolean: 'bool' }[typeof v];
    if (!type) throw new Unshowable(JSON.stringify(v));
    el.typedInput('type', type);
    el.typedInput('value', type === 'json' ? JSON.stringify(v) : String(v));
    return el;
  }

  /** The value of a typed input made by valueInput; a problem of the field when it is no value. */
  function readValue(reader, el, messages) {
    var type = el.typedInput('type');
    var text = el.typedInput('value');
    if (type === 'num') {
      if (text.trim() === '' || !number(text)) reader.problem(el, messages.number);
      return Number(text);
    }
    if (type === 'bool') return text === 'true';
    if (type === 'json') {
      try {
        return JSON.parse(text);
      } catch {
        reader.problem(el, messages.json);
        return undefined;
      }
    }
    return text;
  }

  /**
   * The helpers a form's rows use, bound to that form's strings `t`: reading a JSON value into a
   * field's text (a value the form cannot show throws Unshowable, and the dialog stays on JSON),
   * making inputs, and listing what a row keeps unseen.
   */
  function rowHelpers(t) {
    function fail(where, what) {
      throw new Unshowable(where + ': ' + what);
    }

    function obj(v, where) {
      if (v === undefined) return {};
      if (!v || typeof v !== 'object' || Array.isArray(v)) fail(where, t('not-object'));
      return v;
    }

    function textOf(v, where) {
      if (v === undefined) return '';
      if (typeof v !== 'string') fail(where, t('not-text'));
      return v;
    }

    function numOf(v, where) {
      if (v === undefined) return '';
      if (typeof v !== 'number') fail(where, t('not-number'));
      return String(v);
    }

    function enumOf(values, type, where) {
      if (values === undefined) return '';
      if (!Array.isArray(values)) fail(where, t('not-list'));
      var want = type === 'integer' ? 'number' : type;
      var ok = values.every(function (v) {
        return typeof v === want && (want !== 'string' || (v !== '' && !/,|^\s|\s$/.test(v)));
      });
      if (!ok) fail(where, t('enum-mixed'));
      return values.join(', ');
    }

    function input(row, cls, width, placeholder) {
      return $('<input type="text">')
        .addClass(cls)
        .css({ width: width })
        .attr('placeholder', placeholder || '')
        .appendTo(row);
    }

    function rows(ol) {
      var out = [];
      ol.editableList('items').each(function () {
        out.push($(this));
      });
      return out;
    }

    function kept(row, rule, shown, prefix) {
      var others = Object.keys(rule)
        .filter(function (k) {
          return shown.indexOf(k) === -1;
        })
        .map(function (k) {
          return (prefix || '') + k;
        });
      if (others.length)
        $('<div class="edge-llm-form-kept">')
          .text(t('kept', { keys: others.join(', ') }))
          .appendTo(row);
    }

    function textValue(el, before) {
      var v = String(el.val());
      return v === '' ? (before === '' ? '' : undefined) : v;
    }

    return {
      fail: fail,
      obj: obj,
      textOf: textOf,
      numOf: numOf,
      enumOf: enumOf,
      input: input,
      rows: rows,
      kept: kept,
      textValue: textValue,
    };
  }

  window.EdgeLlmFormView = {
    create: create,
    Unshowable: Unshowable,
    clone: clone,
    own: own,
    put: put,
    listText: listText,
    valueInput: valueInput,
    readValue: readValue,
    rowHelpers: rowHelpers,
  };
})();
