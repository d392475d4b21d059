/* global window, RED, $ */
/*
 * The generation settings that llm-parse and llm-plan share in their edit dialogs: one list of
 * fields, their defaults and checks, and their form rows. Node-RED loads this file (from the
 * package's resources/ folder) before the nodes' own editor scripts run.
 */
(function () {
  'use strict';
  if (window.EdgeLlmGenerationForm) return;
  var FIELDS = [
    { name: 'overrides', value: false, icon: 'sliders', checkbox: true },
    { name: 'maxTokens', value: '512', icon: 'hashtag' },
    { name: 'temperature', value: '0', icon: 'thermometer-half' },
    { name: 'timeout', value: '', icon: 'clock-o', placeholder: 'runtime-default' },
    { name: 'priority', value: 'normal', icon: 'sort-amount-desc', options: ['high', 'normal', 'low'] },
    { name: 'retries', value: '1', icon: 'repeat' },
    { name: 'maxInput', value: '32000', icon: 'compress' },
  ];

  function fields(omit) {
    return FIELDS.filter(function (f) {
      return !omit || omit.indexOf(f.name) === -1;
    });
  }

  function row(type, field) {
    var id = 'node-input-' + field.name;
    var label =
      '<label for="' +
      id +
      '"><i class="fa fa-' +
      field.icon +
      '"></i> ' +
      '<span data-i18n="' +
      type +
      '.label.' +
      field.name +
      '"></span></label>';
    if (field.checkbox) {
      return (
        '<div class="form-row">' +
        label +
        '<input type="checkbox" id="' +
        id +
        '" style="width: auto" /> <span data-i18n="' +
        type +
        '.label.' +
        field.name +
        '-hint"></span></div>'
      );
    }
    var input = field.options
      ? '<select id="' +
        id +
        '" style="width: 120px">' +
        field.options
          .map(function (o) {
            return '<option value="' + o + '" data-i18n="' + type + '.priority.' + o + '"></option>';
          })
          .join('') +
        '</select>'
      : '<input type="text" id="' +
        id +
        '" style="width: 80px"' +
        (field.placeholder ? ' data-i18n="[placeholder]' + type + '.label.' + field.placeholder + '"' : '') +
        ' />';
    return '<div class="form-row">' + label + input + '</div>';
  }

  window.EdgeLlmGenerationForm = {
    /**
     * The fields' entries for a node type's `defaults`; `values` changes a field's default value,
     * `omit` lists fields the type does not have.
     */
    defaults: function (values, omit) {
      var out = {};
      fields(omit).forEach(function (f) {
        var value = values && Object.prototype.hasOwnProperty.call(values, f.name) ? values[f.name] : f.value;
        out[f.name] =
          f.options || f.checkbox
            ? { value: value }
            : { value: value, validate: RED.validators.number(true) };
      });
      return out;
    },
    /**
     * The code editor of a long instruction, with its lines wrapped at the editor's width (a user
     * saw an instruction cut off at the right edge): Monaco's wordWrap, or Ace's wrap mode.
     */
    instructionEditor: function (id, value) {
      var editor = RED.editor.createEditor({
        id: id,
        mode: 'ace/mode/text',
        value: value || '',
        wordWrap: 'on',
      });
      var session = editor.getSession && editor.getSession();
      if (session && typeof session.setUseWrapMode === 'function') session.setUseWrapMode(true);
      return editor;
    },
    /**
     * Puts the rows into the node type's edit form, where its template holds
     * `<div data-edge-llm-generation></div>`; the labels come from the type's own catalog.
     */
    addRows: function (type, omit) {
      var template = $('script[data-template-name="' + type + '"]');
      var html = fields(omit)
        .map(function (f) {
          return row(type, f);
        })
        .join('\n');
      template.text(template.text().replace(/<div data-edge-llm-generation><\/div>/, html));
    },
  };
})();
