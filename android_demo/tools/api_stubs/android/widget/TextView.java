package android.widget;
public class TextView extends android.view.View {
    public TextView(android.content.Context context) { super(context); }
    public CharSequence getText() { return null; }
    public final void setText(CharSequence text) {}
    public float getTextSize() { return 0; }
    public void setTextSize(float size) {}
    public void setTextIsSelectable(boolean selectable) {}
    public final void append(CharSequence text) {}
}
