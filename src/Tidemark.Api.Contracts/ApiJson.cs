using System.Text.Encodings.Web;
using System.Text.Json;

namespace Tidemark.Api;

/// <summary>The JSON conventions of the API, shared by server and client so both agree byte for byte.</summary>
public static class ApiJson
{
    public static JsonSerializerOptions Options { get; } = Create();

    public static JsonSerializerOptions Create() => new(JsonSerializerDefaults.Web)
    {
        WriteIndented = false,

        // Names and messages are read by people in terminals; this JSON is never embedded in HTML.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,

        // A missing or null required field is a 400 with the field's name, not a null deep inside.
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
    };
}
