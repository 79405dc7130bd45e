package android.view;
public class View {
    public View(android.content.Context context) {}
    public void setPadding(int left, int top, int right, int bottom) {}
    public void setOnClickListener(OnClickListener l) {}
    public interface OnClickListener { void onClick(View v); }
}
